// Growing an image's virtual size (QEMU's qcow2_co_truncate for a larger
// size without preallocation), as a commit job does to a base smaller than
// its top: the L1 table grows to map the new size exactly, then the size
// field is rewritten and synced. New clusters stay unallocated.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image {
    /// Grows the image to `newSize` bytes (a whole number of sectors); a
    /// size at or below the current one changes nothing.
    public func grow(to newSize: UInt64) throws {
        guard let writer else { throw Qcow2Error.readOnly }
        guard newSize > size else { return }
        guard newSize % 512 == 0, newSize <= Qcow2Limits.maxVirtualSize else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Invalid image size \(newSize)")
        }
        let hasBitmaps = extensions.contains {
            if case .bitmaps = $0 { return true }
            return false
        }
        if hasBitmaps {
            throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: "Can't resize an image which has bitmaps")
        }
        try writer.lock.withLock {
            if writer.version < 3 && !writer.snapshots.entries.isEmpty {
                throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: "Can't resize a v2 image which has snapshots")
            }
            if let corruption = writer.corruption { throw Qcow2Error.writeFailed(errno: EIO, reason: corruption) }
            let bytesPerL1Entry = writer.clusterSize << writer.l2Bits
            try writer.growL1TableLocked(minEntries: divideRoundingUp(newSize, bytesPerL1Entry), exact: true)
            var field = [UInt8](repeating: 0, count: 8)
            field.setBE(newSize, at: 0)
            try writer.file.write(field, at: 24)
            try writer.file.flush()
            writer.header.size = newSize
            writer.imageSize = newSize
        }
        header.size = newSize
    }
}
