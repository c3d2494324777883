// Resizing a raw image: QEMU 7.2's raw format driver hands the new length to
// file-posix (raw_co_truncate, handle_aiocb_truncate), which sets the file's
// exact length: growing with the preallocation modes a new file gets
// (RawPreallocation), shrinking only without preallocation.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension RawImage {
    /// Sets the file's length to `newSize` (any byte count), preallocating
    /// a grown part as `preallocation` says; `size` follows (rounded up to
    /// whole sectors).
    /// Throws `Qcow2Error.creation` with file-posix's reason.
    package func truncate(to newSize: UInt64, preallocation: Preallocation) throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        let current = try file.size()
        if newSize < current {
            guard preallocation == .off else {
                throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: "Cannot use preallocation for shrinking files")
            }
            try RawPreallocation.truncate(file, to: newSize)
        } else {
            try RawPreallocation.grow(file: file, to: newSize, mode: preallocation)
        }
        sizeStorage.store(try file.sectorRoundedSize(), ordering: .relaxed)
    }
}
