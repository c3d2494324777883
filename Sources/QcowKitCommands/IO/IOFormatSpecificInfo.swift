// What qemu-io's `info` adds for qcow2 beyond the format name: the VM state
// offset, and the "Format specific information" block qemu-img info prints
// too (ImageInfoReader.formatSpecific, Qcow2FormatInfo.humanText), seen as
// QEMU sees it with the image open.
import Qcow2

enum IOFormatSpecificInfo {
    /// Where QEMU keeps a qcow2 image's VM state: the first L2-table span
    /// past the virtual disk (qcow2's vm_state_offset).
    static func vmStateOffset(_ header: Qcow2Header) -> Int64 {
        let shift = UInt64(header.clusterBits) + UInt64(header.l2Bits)
        guard shift < 64 else { return 0 }
        let index = (header.size >> shift) + (header.size & ((1 << shift) - 1) == 0 ? 0 : 1)
        // QEMU shifts a signed 64-bit value; an absurd size wraps the same way.
        return Int64(bitPattern: index &<< shift)
    }

    /// The block for `image`, heading included. An image opened read-write
    /// shows every persistent bitmap as in use, since QEMU marks them so
    /// while it has the image open for writing.
    static func text(_ image: Qcow2Image, openedReadWrite: Bool) throws -> String {
        var warnings: [ImageInfoWarning] = []
        var info = try ImageInfoReader.formatSpecific(image: image, warnings: &warnings)
        if openedReadWrite, let bitmaps = info.bitmaps {
            info.bitmaps = bitmaps.map { bitmap in
                var bitmap = bitmap
                if !bitmap.flags.contains(.inUse) { bitmap.flags.insert(.inUse, at: 0) }
                return bitmap
            }
        }
        return info.humanText
    }
}
