// What a block job holds in the graph while it exists (QEMU's
// block_job_add_bdrv and op blockers): references that keep its nodes open,
// links that make them non-root, blockers that refuse other jobs and
// blockdev-del on them ("Node 'x' is busy: ..."), and the nodes it reads and
// writes through block backends of its own ("Node x is in use").

final class JobClaim {
    let jobType: String
    private(set) var nodes: [BlockNode]
    /// Nodes the job opened a block backend on (commit: top and base).
    private(set) var backends: [BlockNode]

    init(jobType: String, nodes: [BlockNode], backends: [BlockNode]) {
        self.jobType = jobType
        self.nodes = nodes
        self.backends = backends
    }

    func holds(_ node: BlockNode) -> Bool { nodes.contains { $0 === node } }
    func usesAsBackend(_ node: BlockNode) -> Bool { backends.contains { $0 === node } }
}

extension BlockGraph {
    /// Takes hold of `nodes` for a job of type `jobType`.
    func claim(_ nodes: [BlockNode], backends: [BlockNode], jobType: String) -> JobClaim {
        var unique: [BlockNode] = []
        for node in nodes + backends where !unique.contains(where: { $0 === node }) { unique.append(node) }
        let claim = JobClaim(jobType: jobType, nodes: unique, backends: backends)
        claims.append(claim)
        return claim
    }

    /// Lets go of a job's nodes; those nothing else refers to are closed.
    func release(_ claim: JobClaim) {
        guard claims.contains(where: { $0 === claim }) else { return }
        claims.removeAll { $0 === claim }
        for node in claim.nodes { releaseIfUnreferenced(node) }
    }

    /// QEMU's bdrv_op_is_blocked for a node a job holds.
    func checkNotBusy(_ node: BlockNode) throws {
        if let claim = claims.first(where: { $0.holds(node) }) {
            throw BlockGraphError("Node '\(node.nodeName)' is busy: block device is in use by block job: \(claim.jobType)")
        }
    }
}
