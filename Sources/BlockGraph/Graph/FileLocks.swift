// QEMU's image locking, within one graph: a file may be open in several
// nodes only if none of them writes it (a writer needs it unshared, a
// reader needs writes unshared). Across processes each format node's file
// carries QEMU's lock bytes for what the node's users need (BlockFile's
// access); the in-graph check comes first and words conflicts as QEMU's
// permission checks do.

import Qcow2

extension BlockGraph {
    /// What a format node needs of its file now, from its users, mode and
    /// force-share (QEMU's bdrv_child_perm for the file child).
    func fileAccess(_ node: BlockNode, readOnly: Bool) -> BlockAccess {
        node.user.forFile(of: node.driver == "qcow2" ? .qcow2 : .raw, writable: !readOnly, forceShare: node.forceShare)
    }

    /// Locks a format node's file for what the node's users need now
    /// (after a job changed them).
    func refreshFileAccess(_ node: BlockNode) throws {
        guard node.isFormatNode, let file = node.file?.blockFile else { return }
        try file.setAccess(fileAccess(node, readOnly: node.isReadOnly))
    }

    /// Throws QEMU's message if opening `blockFile` (for writing or not)
    /// conflicts with another file node of the graph on the same file.
    func checkFileLocks(_ blockFile: BlockFile, writable: Bool, except: BlockNode?) throws {
        let identity = try blockFile.identity()
        for other in nodes where !other.isFormatNode && other !== except {
            guard let otherFile = other.blockFile, (try? otherFile.identity()) == identity else { continue }
            if writable { throw BlockGraphError("Failed to get \"write\" lock") }
            if !other.isReadOnly { throw BlockGraphError("Failed to get shared \"write\" lock") }
        }
    }
}
