// What a block job holds in the graph while it exists (QEMU's
// block_job_add_bdrv and op blockers): references that keep its nodes open,
// links that make them non-root, blockers that refuse other jobs and
// blockdev-del on them ("Node 'x' is busy: ..."), and the nodes it reads and
// writes through block backends of its own ("Node x is in use").

import Qcow2

final class JobClaim {
    let jobType: String
    private(set) var nodes: [BlockNode]
    /// Nodes the job opened a block backend on (commit: top and base).
    private(set) var backends: [BlockNode]
    /// What the job needs of nodes beyond their other users, and what
    /// those users needed before (given back on release).
    let uses: [(node: BlockNode, access: BlockAccess)]
    fileprivate var previousUsers: [BlockAccess] = []

    init(jobType: String, nodes: [BlockNode], backends: [BlockNode], uses: [(node: BlockNode, access: BlockAccess)]) {
        self.jobType = jobType
        self.nodes = nodes
        self.backends = backends
        self.uses = uses
    }

    func holds(_ node: BlockNode) -> Bool { nodes.contains { $0 === node } }
    func usesAsBackend(_ node: BlockNode) -> Bool { backends.contains { $0 === node } }
}

extension BlockGraph {
    /// Takes hold of `nodes` for a job of type `jobType`, which also uses
    /// some nodes itself (`uses`, QEMU's job permissions: a commit stops
    /// sharing consistent reads of the layers it merges, a stream writes its
    /// device unchanged); their files are locked for that, and another
    /// process in the way refuses the job (`lockConflict`).
    func claim(_ nodes: [BlockNode], backends: [BlockNode], jobType: String,
               uses: [(node: BlockNode, access: BlockAccess)] = []) throws -> JobClaim {
        var unique: [BlockNode] = []
        for node in nodes + backends where !unique.contains(where: { $0 === node }) { unique.append(node) }
        let claim = JobClaim(jobType: jobType, nodes: unique, backends: backends, uses: uses)
        claims.append(claim)
        do {
            for (node, access) in uses {
                claim.previousUsers.append(node.user)
                node.user = node.user.combined(with: access)
                try refreshFileAccess(node)
            }
        } catch {
            release(claim)
            throw error
        }
        return claim
    }

    /// What a commit needs of a layer it merges: nobody else may read it
    /// consistently meanwhile.
    static let mergedLayer = BlockAccess(perm: [], shared: BlockPermissions.all.subtracting(.consistentRead))

    /// Lets go of a job's nodes; those nothing else refers to are closed.
    func release(_ claim: JobClaim) {
        guard claims.contains(where: { $0 === claim }) else { return }
        claims.removeAll { $0 === claim }
        for (index, previous) in claim.previousUsers.enumerated().reversed() {
            let node = claim.uses[index].node
            node.user = previous
            try? refreshFileAccess(node)  // only gives permissions up
        }
        claim.previousUsers = []
        for node in claim.nodes { releaseIfUnreferenced(node) }
    }

    /// QEMU's bdrv_op_is_blocked for a node a job holds.
    func checkNotBusy(_ node: BlockNode) throws {
        if let claim = claims.first(where: { $0.holds(node) }) {
            throw BlockGraphError("Node '\(node.nodeName)' is busy: block device is in use by block job: \(claim.jobType)")
        }
    }
}
