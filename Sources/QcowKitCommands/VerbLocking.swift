// Image locking for the verbs, in one place: what each verb's user of
// an image needs and shares (QEMU's block backend for that verb, measured on
// qemu-img and qemu-io 7.2 by tracing their lock bytes). The format then
// adds what it needs of the file (`BlockAccess.forFile`), backings get what
// their overlay needs (`forBacking`). A new verb picks its row here and
// opens through `ReadCommands.openChain`, so that it locks as QEMU does.
import Qcow2

/// What each verb's user of the image it opens needs and shares.
enum VerbAccess {
    /// info: no guest I/O, nothing needed; the format (qcow2) still refuses
    /// writers, as it reads metadata.
    static let info = BlockAccess.none
    /// check, map, compare, io -r: consistent reads, everything shared.
    static let read = BlockAccess.backend(writable: false)
    /// check -r, io (read-write), and every verb that writes an image it
    /// opens: consistent reads and writes, everything shared (a qcow2
    /// file then refuses other writers and resizers).
    static let write = BlockAccess.backend(writable: true)
    /// convert's source: consistent reads, and nobody may write or resize
    /// it meanwhile (a raw source too).
    static let convertSource = BlockAccess(perm: .consistentRead, shared: [.consistentRead, .writeUnchanged])
    /// qemu-nbd's image: its block backend and the export's, which lets
    /// nobody resize the image while it is served.
    static func nbdExport(writable: Bool) -> BlockAccess {
        BlockAccess(perm: writable ? [.consistentRead, .write] : .consistentRead,
                    shared: BlockPermissions.all.subtracting(.resize))
    }
}
