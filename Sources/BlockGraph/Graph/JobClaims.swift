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
    /// Nodes whose reads are not consistent while the job runs (a commit's
    /// layers below the active image): nobody else may read them meanwhile.
    let inconsistent: [BlockNode]

    init(jobType: String, nodes: [BlockNode], backends: [BlockNode], inconsistent: [BlockNode]) {
        self.jobType = jobType
        self.nodes = nodes
        self.backends = backends
        self.inconsistent = inconsistent
    }

    func holds(_ node: BlockNode) -> Bool { nodes.contains { $0 === node } }
    func usesAsBackend(_ node: BlockNode) -> Bool { backends.contains { $0 === node } }
}

extension BlockGraph {
    /// Takes hold of `nodes` for a job of type `jobType`; the job stops
    /// sharing consistent reads of `inconsistent` (as QEMU's commit does for
    /// the layers it merges), which another process reading them refuses
    /// (`lockConflict`: "Failed to get shared \"consistent read\" lock").
    func claim(_ nodes: [BlockNode], backends: [BlockNode], jobType: String,
               inconsistent: [BlockNode] = []) throws -> JobClaim {
        var unique: [BlockNode] = []
        for node in nodes + backends where !unique.contains(where: { $0 === node }) { unique.append(node) }
        let claim = JobClaim(jobType: jobType, nodes: unique, backends: backends, inconsistent: inconsistent)
        claims.append(claim)
        do {
            for node in inconsistent {
                node.user.shared.remove(.consistentRead)
                try refreshFileAccess(node)
            }
        } catch {
            release(claim)
            throw error
        }
        return claim
    }

    /// Lets go of a job's nodes; those nothing else refers to are closed.
    func release(_ claim: JobClaim) {
        guard claims.contains(where: { $0 === claim }) else { return }
        claims.removeAll { $0 === claim }
        for node in claim.inconsistent where !node.user.shared.contains(.consistentRead) {
            node.user.shared.insert(.consistentRead)
            try? refreshFileAccess(node)  // only gives permissions up
        }
        for node in claim.nodes { releaseIfUnreferenced(node) }
    }

    /// QEMU's bdrv_op_is_blocked for a node a job holds.
    func checkNotBusy(_ node: BlockNode) throws {
        if let claim = claims.first(where: { $0.holds(node) }) {
            throw BlockGraphError("Node '\(node.nodeName)' is busy: block device is in use by block job: \(claim.jobType)")
        }
    }
}
