// Block exports on nodes (QEMU's BlockExport and the block backend it opens
// on its node, block/export/export.c): while an export exists it keeps its
// node open, blockdev-del refuses the node, and the node's file is locked for
// what the export needs (consistent reads, and writes when writable; every
// permission shared, as blk_exp_add asks). Exports and block jobs on the same
// node coexist: writes through an export go through the node, where an
// active commit sees them.

import Qcow2
import Synchronization

/// One export's hold on its node. A job that replaces the node (a completed
/// commit puts the base in the top's place) moves the export with it, as
/// QEMU moves the export's block backend.
// @unchecked: `current` is behind its Mutex (the export's requests read it
// from server threads); `previousUser` is touched on the graph's thread only.
public final class NodeExportUse: @unchecked Sendable {
    private let current: Mutex<BlockNode>
    let access: BlockAccess
    fileprivate var previousUser = BlockAccess.none

    init(node: BlockNode, access: BlockAccess) {
        self.current = Mutex(node)
        self.access = access
    }

    /// The node the export serves now.
    public var node: BlockNode { current.withLock { $0 } }

    fileprivate func move(to node: BlockNode) { current.withLock { $0 = node } }
}

extension BlockGraph {
    /// Opens an export's use of `node`; a writable export of a read-only
    /// node is refused in QEMU's words.
    public func useForExport(_ node: BlockNode, writable: Bool) throws -> NodeExportUse {
        if writable && node.isReadOnly { throw BlockGraphError("Cannot export read-only node as writable") }
        let use = NodeExportUse(node: node, access: .backend(writable: writable))
        use.previousUser = node.user
        node.user = node.user.combined(with: use.access)
        do {
            try refreshFileAccess(node)
        } catch {
            node.user = use.previousUser
            try? refreshFileAccess(node)
            throw error
        }
        exportUses.append(use)
        return use
    }

    /// Ends an export's use of its node (its last client has gone).
    public func release(_ use: NodeExportUse) {
        guard exportUses.contains(where: { $0 === use }) else { return }
        exportUses.removeAll { $0 === use }
        // What the node's users needed before, with what live jobs and other
        // exports need now (uses may end in any order).
        var user = use.previousUser
        for claim in claims { for (node, access) in claim.uses where node === use.node { user = user.combined(with: access) } }
        for other in exportUses where other.node === use.node { user = user.combined(with: other.access) }
        use.node.user = user
        try? refreshFileAccess(use.node)  // only gives permissions up
        releaseIfUnreferenced(use.node)
    }

    func isExported(_ node: BlockNode) -> Bool { exportUses.contains { $0.node === node } }

    /// bdrv_replace_node for exports: those on `old` serve `new` from now
    /// on, which is locked for what they need.
    func moveExports(from old: BlockNode, to new: BlockNode) {
        for use in exportUses where use.node === old {
            use.move(to: new)
            new.user = new.user.combined(with: use.access)
            try? refreshFileAccess(new)
        }
    }
}

extension BlockNode {
    /// Block status through the backing chain (base:allocation) and the
    /// layer that decides it (qemu:allocation-depth), for exports.
    public func chainBlockStatus(at offset: UInt64, length: UInt64) throws -> (status: BlockStatus, depth: Int) {
        let chain = try image.chainBlockStatus(at: offset, length: length)
        return (chain.status, chain.depth)
    }

    /// Zero writes that never fall back to writing zero buffers (NBD's
    /// FAST_ZERO): qcow2 v3 has zero clusters; raw asks the file system.
    public var hasFastZeroWrites: Bool {
        switch image {
        case let qcow2 as Qcow2Image: return qcow2.header.version >= 3
        case is RawImage: return true
        default: return false
        }
    }
}
