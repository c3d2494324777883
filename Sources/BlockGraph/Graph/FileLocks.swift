// QEMU's image locking, within one graph: a file may be open in several
// nodes only if none of them writes it (a writer needs it unshared, a
// reader needs writes unshared). QEMU enforces this with OFD locks across
// processes too; here it keeps two nodes from caching one image's metadata
// while one of them changes it.

import Qcow2

extension BlockGraph {
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
