// Growing the host file under a new or growing image, as QEMU's qcow2 driver
// asks its file-posix child to (bdrv_co_truncate on bs->file): the metadata
// and falloc/full preallocation modes of a grow (GrowPreallocation.swift)
// end here.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    // MARK: The host file

    /// Grows the file without preallocation.
    func truncateFile(to length: UInt64) throws {
        try RawPreallocation.truncate(file, to: length)
    }

    /// Grows the file to `length` with QEMU's file-posix preallocation:
    /// fallocate() the new part, or write it with zeroes and sync.
    func preallocateFile(to length: UInt64, mode: Preallocation) throws {
        try RawPreallocation.grow(file: file, to: length, mode: mode)
    }
}
