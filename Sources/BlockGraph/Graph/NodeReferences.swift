// Who refers to a node, and what happens when nothing does (QEMU's
// bs->refcnt and bdrv_unref): a node is referenced by each parent that has
// it as `file` or `backing`, by the monitor (blockdev-add, until
// blockdev-del), by each drive using it as root and by each job working on
// it. A node whose last reference goes is closed and leaves the graph, and
// its children lose a reference in turn.

import Qcow2

extension BlockGraph {
    /// Parents of `node`, each once per child link (oldest parent first).
    func parents(of node: BlockNode) -> [BlockNode] {
        var result: [BlockNode] = []
        for parent in nodes {
            if parent.file === node { result.append(parent) }
            if parent.backing === node { result.append(parent) }
        }
        return result
    }

    /// QEMU's bdrv_is_root_node: no node has it as a child, and no job
    /// holds it (a job's links count as parents there).
    func isRoot(_ node: BlockNode) -> Bool {
        !nodes.contains { $0.file === node || $0.backing === node } && !claims.contains { $0.holds(node) }
    }

    func referenceCount(_ node: BlockNode) -> Int {
        parents(of: node).count
            + (monitorOwned.contains { $0 === node } ? 1 : 0)
            + drives.filter { $0.node === node }.count
            + claims.filter { $0.holds(node) }.count
            + exportUses.filter { $0.node === node }.count
    }

    /// Keeps `node` open as a monitor's reference does, until `closeAll`
    /// (qemu-img commit's BlockBackend on the image it commits, which a
    /// completed job has replaced with its base).
    public func hold(_ node: BlockNode) {
        if !monitorOwned.contains(where: { $0 === node }) { monitorOwned.append(node) }
    }

    /// Closes and removes `node` if nothing refers to it any more, then
    /// does the same for its children. Close errors are reported, not
    /// thrown: the node is gone either way, as in QEMU.
    @discardableResult
    func releaseIfUnreferenced(_ node: BlockNode) -> [Error] {
        guard nodes.contains(where: { $0 === node }), referenceCount(node) == 0 else { return [] }
        var errors: [Error] = []
        do { try close(node) } catch { errors.append(error) }
        nodes.removeAll { $0 === node }
        let children = [node.backing, node.file].compactMap { $0 }
        node.backing = nil
        node.file = nil
        for child in children { errors += releaseIfUnreferenced(child) }
        return errors
    }

    /// Closes what the node itself holds: a qcow2 image writes back its
    /// metadata and clears its dirty bit; a file node closes its file.
    func close(_ node: BlockNode) throws {
        if let qcow2 = node.qcow2 {
            try qcow2.closeKeepingFile()
        } else if !node.isFormatNode {
            try node.blockFile?.close()
        }
    }

    /// blockdev-del: drops the monitor's reference to a node it added.
    public func deleteBlockdev(nodeName: String) throws {
        guard let node = node(named: nodeName) else {
            throw BlockGraphError("Failed to find node with node-name='\(nodeName)'")
        }
        if drives.contains(where: { $0.node === node }) || claims.contains(where: { $0.usesAsBackend(node) }) || isExported(node) {
            throw BlockGraphError("Node \(nodeName) is in use")
        }
        try checkNotBusy(node)
        guard monitorOwned.contains(where: { $0 === node }) else {
            throw BlockGraphError("Node \(nodeName) is not owned by the monitor")
        }
        guard referenceCount(node) == 1 else { throw BlockGraphError("Block device \(nodeName) is in use") }
        monitorOwned.removeAll { $0 === node }
        releaseIfUnreferenced(node)
    }

    /// Points every parent link and drive that uses `old` at `new` instead
    /// (QEMU's bdrv_replace_node), in memory: qcow2 parents read through the
    /// new node from now on. Headers are not touched.
    func replaceNode(_ old: BlockNode, with new: BlockNode) {
        for parent in nodes where parent !== new {
            if parent.backing === old {
                parent.backing = new
                parent.qcow2?.attachBacking(new.image)
                parent.backingOverridden = backingIsOverridden(parent)
            }
        }
        for index in drives.indices where drives[index].node === old { drives[index].node = new }
        moveExports(from: old, to: new)
    }
}
