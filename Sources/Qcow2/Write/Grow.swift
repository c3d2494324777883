// Growing an image's virtual size: QEMU 7.2's qcow2_co_truncate for a size no
// smaller than the current one, with its preallocation modes. Image creation
// gives a new, empty image its size through it (as qcow2_co_create does with
// blk_truncate); resize and a commit into a shorter base reach it through
// Truncate.swift.
//  1. the L1 table grows to map the new size exactly;
//  2. the preallocation mode's work (GrowPreallocation.swift);
//  3. with preallocation, the caches are written;
//  4. over a backing file longer than the old size, the new part is zeroed
//     (Truncate.swift);
//  5. the size field is rewritten and synced.
// New clusters stay unallocated without preallocation.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image {
    /// Grows the image to `newSize` bytes (a whole number of sectors); a
    /// size at or below the current one changes nothing.
    /// Throws `Qcow2Error` (`readOnly`, `writeFailed`, I/O errors).
    public func grow(to newSize: UInt64) throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        guard newSize > size else { return }
        try grow(to: newSize, preallocation: .off)
    }

    /// Grows the image to `newSize` bytes (a whole number of sectors, at
    /// least the current size), preallocating the new part as `preallocation`
    /// says.
    func grow(to newSize: UInt64, preallocation: Preallocation) throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        guard newSize >= size, newSize % 512 == 0, newSize <= Qcow2Limits.maxVirtualSize else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Invalid image size \(newSize)")
        }
        try withWriter { writer, lock in
            try writer.checkBitmapsResizable(newSize: newSize)
            try writer.checkResizable()
            if let corruption = writer.corruption { throw Qcow2Error.writeFailed(errno: EIO, reason: corruption) }
            try writer.grow(to: newSize, preallocation: preallocation, lock: lock)
            writer.resizeBitmaps(to: newSize)
        }
        stored.withLock { $0.header.size = newSize }
    }
}

extension Qcow2Writer {
    /// Version 2 images store no disk size with their snapshots.
    func checkResizable() throws {
        if version < 3 && !snapshots.entries.isEmpty {
            throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: "Can't resize a v2 image which has snapshots")
        }
    }

    /// qcow2_co_truncate growing the image from `imageSize` to `newSize`;
    /// with `zeroingNewPart` the new part is made to read as zeroes over a
    /// longer backing file first (Truncate.swift).
    func grow(to newSize: UInt64, preallocation: Preallocation, zeroingNewPart: Bool = false,
              lock: borrowing HeldMetadataLock) throws {
        let oldSize = imageSize
        precondition(newSize >= oldSize)
        try growL1Table(minEntries: divideRoundingUp(newSize, clusterSize << l2Bits), exact: true)
        switch preallocation {
        case .off: break
        case .metadata: try preallocateMetadata(from: oldSize, to: newSize, lock: lock)
        case .falloc, .full: try preallocateClusters(from: oldSize, to: newSize, mode: preallocation, lock: lock)
        }
        // The new metadata is written before the size says it is there.
        if preallocation != .off { try writeCaches() }
        if zeroingNewPart { try zeroGrownPart(from: oldSize, to: newSize, lock: lock) }
        try writeSize(newSize)
        imageSize = newSize
    }
}
