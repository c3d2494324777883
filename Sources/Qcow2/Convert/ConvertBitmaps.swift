// convert --bitmaps (qemu-img 7.2's convert_check_bitmaps and
// convert_copy_bitmaps): the source's persistent bitmaps are checked before
// anything is created (an inconsistent one stops the convert unless
// --skip-broken-bitmaps), and copied after the data: each added to the
// target with its granularity and enabled state, then filled by a merge.
// The target stores them when it closes, in the source's directory order.

package enum ConvertBitmaps {
    /// A step failed; the message is qemu-img's (hint lines included).
    package struct Failure: Error, CustomStringConvertible {
        package var description: String
    }

    /// Before creating the target. Only qcow2 sources carry bitmaps.
    package static func check(source: BlockImage, skipBroken: Bool) throws {
        guard let qcow2 = source as? Qcow2Image, supportsBitmaps(qcow2) else {
            throw Failure(description: "Source lacks bitmap support")
        }
        for bitmap in try bitmaps(qcow2) where bitmap.isPersistent && bitmap.isInconsistent && !skipBroken {
            throw Failure(description: "Cannot copy inconsistent bitmap '\(bitmap.name)'\n"
                          + "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it")
        }
    }

    /// The source's bitmaps; one that cannot be loaded (the memory cap)
    /// stops the convert with its message.
    private static func bitmaps(_ image: Qcow2Image) throws -> [DirtyBitmap] {
        do {
            return try image.dirtyBitmaps()
        } catch let error as BitmapError {
            throw Failure(description: error.message)
        }
    }

    /// Whether `target`'s format stores bitmaps; qemu-img's refusal if not.
    package static func checkTarget(_ target: BlockImage) throws {
        guard let qcow2 = target as? Qcow2Image, supportsBitmaps(qcow2) else {
            throw Failure(description: "Format driver '\(target.format.rawValue)' does not support bitmaps")
        }
    }

    /// After the copy: the bitmaps added to the target and filled.
    /// `warning` receives "Skipping inconsistent bitmap ..." lines.
    package static func copy(from source: BlockImage, to target: BlockImage, skipBroken: Bool,
                             warning: (String) -> Void) throws {
        guard let from = source as? Qcow2Image, let to = target as? Qcow2Image else { return }
        for bitmap in try bitmaps(from) where bitmap.isPersistent {
            if skipBroken && bitmap.isInconsistent {
                warning("Skipping inconsistent bitmap '\(bitmap.name)'")
                continue
            }
            do {
                try to.addDirtyBitmap(bitmap.name, granularity: bitmap.granularity, persistent: true,
                                      disabled: !bitmap.isEnabled, node: BitmapConstraints.anonymousNodeName)
            } catch {
                throw Failure(description: "Failed to create bitmap \(bitmap.name): \(reason(error))")
            }
            do {
                try to.mergeDirtyBitmap(into: bitmap.name, from: bitmap)
            } catch {
                try? to.removeDirtyBitmap(bitmap.name)
                throw Failure(description: "Failed to populate bitmap \(bitmap.name): \(reason(error))")
            }
        }
    }

    /// qcow2_supports_persistent_dirty_bitmap: version 3 images only.
    private static func supportsBitmaps(_ image: Qcow2Image) -> Bool { image.header.version >= 3 }

    private static func reason(_ error: Error) -> String {
        (error as? BitmapError)?.message ?? Qcow2Error.reason(of: error)
    }
}
