// Which parts of a host file hold data and which are holes, found with
// BlockFile.seek (lseek SEEK_DATA / SEEK_HOLE) as QEMU's file-posix driver
// does. Raw images report exactly this; qcow2 images consult it for
// metadata-preallocated files.

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
        switch seek(to: .data, from: offset) {
        case let .failure(error):
            // ENXIO: only a hole follows. Any other error: nothing is known,
            // so everything counts as data.
            isData = error != .noSuchAddressOrDevice
        case let .success(data) where data > offset:
            isData = false
            run = data - offset
        case let .success(data) where data == offset:
            // In data: it runs to the next hole (the end of file counts as one).
            if case let .success(hole) = seek(to: .hole, from: offset), hole > offset { run = hole - offset }
        case .success:
            break
        }
        run = min(run, bytes)
        return FileExtent(length: run, isData: isData, reachesEnd: offset + run == totalSize)
    }
}
