// Changing an open image's virtual size either way: QEMU 7.2's
// bdrv_co_truncate on a qcow2 node (block/io.c, then qcow2_co_truncate), as
// `qemu-img resize` and a commit into a shorter base call it. Checks come in
// QEMU's order, failures in its words:
//  1. growing over a backing file longer than the image asks for the new
//     part to read as zeroes (BDRV_REQ_ZERO_WRITE), which version 2 images
//     cannot do (refused only once the L1 table has grown, as in QEMU);
//  2. the size must be whole sectors; v2 images with snapshots and images
//     with inconsistent bitmaps cannot be resized (the others follow the
//     new size in memory, and are stored so on close);
//  3. shrinking (Shrink.swift) or growing (Grow.swift); the zeroing of step 1
//     comes after a grow's preallocation and before the size is written:
//     zero flags from the first subcluster boundary on, then real zeroes
//     for the head of the old last subcluster, written as a guest write.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image {
    /// Resizes the image to `newSize` bytes (a whole number of sectors),
    /// growing with `preallocation` or shrinking (clusters past the new end
    /// freed, the file cut). Throws `Qcow2Error.writeFailed` with QEMU's
    /// message ("Failed to grow the L1 table: File too large", ...).
    package func truncate(to newSize: UInt64, preallocation: Preallocation) throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        let oldSize = size
        // falloc and full preallocation give the new part fresh clusters
        // of zeroes, which is all the zero write asks for.
        let zeroingNewPart = newSize > oldSize && (backing?.size ?? 0) > oldSize
            && (preallocation == .off || preallocation == .metadata)
        guard newSize % 512 == 0 else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "The new size must be a multiple of 512")
        }
        try withWriter { writer, lock in
            try writer.checkUsable()
            try writer.checkResizable()
            try writer.checkBitmapsResizable(newSize: newSize)
            if newSize < oldSize {
                guard preallocation == .off else {
                    throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Preallocation can't be used for shrinking an image")
                }
                try writer.shrink(to: newSize)
            } else {
                let entries = divideRoundingUp(newSize, writer.clusterSize << writer.l2Bits)
                try writer.failing("Failed to grow the L1 table") {
                    try writer.growL1Table(minEntries: entries, exact: true)
                }
                try writer.guarded {
                    try writer.grow(to: newSize, preallocation: preallocation, zeroingNewPart: zeroingNewPart, lock: lock)
                }
            }
            writer.resizeBitmaps(to: newSize)
        }
        stored.withLock { $0.header.size = newSize }
    }
}

extension Qcow2Writer {
    /// The zeroing of a grow over a longer backing file (the lock held).
    func zeroGrownPart(from oldSize: UInt64, to newSize: UInt64, lock: borrowing HeldMetadataLock) throws {
        let zeroStart = roundUp(oldSize, subclusterSize)
        if newSize > zeroStart {
            do {
                try guarded { try zeroize(offset: zeroStart, length: newSize - zeroStart, mayUnmap: false) }
            } catch is ZeroFlagsUnsupported {
                throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: "Failed to zero out new clusters: \(errnoDescription(ENOTSUP))")
            } catch {
                throw Qcow2Error.writeFailed(errno: Qcow2Error.errnoValue(of: error),
                                             reason: "Failed to zero out new clusters: \(Qcow2Error.reason(of: error))")
            }
        }
        if zeroStart > oldSize {
            let count = Int(min(zeroStart, newSize) - oldSize)
            // A guest write past the old end, without the lock, as QEMU's.
            let image = image
            try failing("Failed to write explicit zeros for the head") {
                try lock.withoutLock {
                    let zeroes = [UInt8](repeating: 0, count: count)
                    try zeroes.withUnsafeBytes { try image.writeGuestData($0, at: oldSize) }
                }
            }
        }
    }

    /// Runs a step of a resize or an amend (lock held); its failure reads
    /// "`step`: <strerror>" as QEMU's error_setg_errno words it. Corrupt
    /// metadata found on the way marks the image corrupt first.
    func failing<T>(_ step: String, _ body: () throws -> T) throws -> T {
        do {
            return try guarded(body)
        } catch {
            throw Qcow2Error.writeFailed(errno: Qcow2Error.errnoValue(of: error),
                                         reason: "\(step): \(Qcow2Error.reason(of: error))")
        }
    }
}
