// Which parts of a host file hold data and which are holes, found with
// lseek(SEEK_DATA / SEEK_HOLE) as QEMU's file-posix driver does. Raw images
// report exactly this; qcow2 images consult it for metadata-preallocated files.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The status of a run of bytes in a host file.
struct FileExtent: Equatable {
    var length: UInt64
    /// Data (true) or a hole that reads as zeroes (false).
    var isData: Bool
    /// The run reaches the end of the file (as the block layer sizes it).
    var reachesEnd: Bool
}

extension BlockFile {
    /// The file's length as QEMU's block layer sees it: whole 512-byte sectors.
    func sectorRoundedSize() throws -> UInt64 {
        let length = try size()
        return alignUp(length, 512) ?? length
    }

    /// The extent starting at `offset`, at most `length` bytes. `totalSize` is
    /// the sector-rounded file size. An offset at or past the end gives a
    /// zero-length extent that reaches the end.
    func extent(at offset: UInt64, length: UInt64, totalSize: UInt64) -> FileExtent {
        guard offset < totalSize else { return FileExtent(length: 0, isData: false, reachesEnd: true) }
        let bytes = min(length, totalSize - offset)
        var run = bytes
        var isData = true
        let fd = descriptor.rawValue
        let data = lseek(fd, off_t(offset), 3 /* SEEK_DATA */)
        if data < 0 {
            // ENXIO: only a hole follows. Any other error: nothing is known,
            // so everything counts as data.
            isData = errno != ENXIO
        } else if UInt64(data) > offset {
            isData = false
            run = UInt64(data) - offset
        } else if UInt64(data) == offset {
            // In data: it runs to the next hole (the end of file counts as one).
            let hole = lseek(fd, off_t(offset), 4 /* SEEK_HOLE */)
            if hole > off_t(offset) { run = UInt64(hole) - offset }
        }
        run = min(run, bytes)
        return FileExtent(length: run, isData: isData, reachesEnd: offset + run == totalSize)
    }
}
