// A dirty bitmap an export serves as the meta context
// qemu:dirty-bitmap:NAME (qemu-nbd -B, block-export-add's `bitmaps`).
// BLOCK_STATUS answers it with flag 1 (NBD_STATE_DIRTY) over dirty runs, at
// the bitmap's granularity. The lookup and its refusals are QEMU 7.2's
// nbd_export_create: the first image down the chain that has the bitmap,
// which must be consistent, and not enabled in a writable image when the
// export is read-only.
import Qcow2

/// One bitmap of an export.
public struct NBDExportBitmap: Sendable {
    public let name: String
    /// The image holding it: with the name, what marks a bitmap busy while
    /// an export serves it.
    public let owner: ObjectIdentifier
    /// The bitmap as it is now: an enabled bitmap of a writable image gains
    /// dirty bits as the export (or anyone else) writes.
    package let current: @Sendable () throws -> DirtyBitmap

    package init(name: String, owner: ObjectIdentifier, current: @escaping @Sendable () throws -> DirtyBitmap) {
        self.name = name
        self.owner = owner
        self.current = current
    }

    /// Finds bitmap `name` in `top` or the first image below it that has
    /// one of that name; throws QEMU's messages.
    public static func lookup(_ name: String, from top: BlockImage, readOnlyExport: Bool) throws -> NBDExportBitmap {
        var layer: BlockImage? = top
        while let image = layer {
            if let qcow2 = image as? Qcow2Image,
               let found = try qcow2.dirtyBitmaps().first(where: { $0.name == name }) {
                if readOnlyExport && qcow2.isWritable && found.isEnabled {
                    throw NBDServerError("Enabled bitmap '\(name)' incompatible with readonly export")
                }
                if found.isInconsistent {
                    throw NBDServerError("Bitmap '\(name)' is inconsistent and cannot be used")
                }
                // A read-only image's bitmaps never change: read them once.
                let owner = ObjectIdentifier(qcow2)
                guard qcow2.isWritable else { return NBDExportBitmap(name: name, owner: owner) { found } }
                return NBDExportBitmap(name: name, owner: owner) { try qcow2.dirtyBitmap(named: name) }
            }
            layer = image.backing
        }
        throw NBDServerError("Bitmap '\(name)' is not found")
    }

    /// The extent at `offset` (at most `length`, never 0): its length and
    /// flags (dirty or not).
    func extent(of bitmap: DirtyBitmap, at offset: UInt64, length: UInt64) -> (length: UInt64, flags: UInt32) {
        let run = bitmap.run(at: offset, end: offset + length, maxDirty: UInt64(Int32.max))
        return (run.length, run.dirty ? NBDProtocol.stateDirty : 0)
    }
}
