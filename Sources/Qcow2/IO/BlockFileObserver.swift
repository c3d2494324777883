// A seam for power-loss tests: what a `BlockFile` changes on its file, told
// in order as each change completes, with its data. The crash-state replayer
// of the test suite (Tests/Qcow2Tests/PowerLoss) records a run through it and
// rebuilds the file as a power failure could have left it: everything before
// a flush, any subset of what came after. Only a file opened with an observer
// (`BlockFile.init(path:writable:locking:observer:)`, which no command uses)
// reports anything; every other file pays one nil check per change.

/// One change a `BlockFile` made to its file, or a sync.
package enum BlockFileOperation: Sendable {
    /// pwrite (or a copy_file_range, reported as the bytes it wrote).
    case write(offset: UInt64, bytes: [UInt8])
    /// fallocate(2) in `mode` (posix_fallocate is mode 0).
    case fallocate(mode: FallocateMode, offset: UInt64, length: UInt64)
    /// ftruncate.
    case truncate(length: UInt64)
    /// fdatasync (a flush the file did not ignore) or fsync: everything
    /// before it is durable.
    case flush
}

/// Told of every change of an observed `BlockFile`, after it succeeded, in
/// the order the changes completed. Called on the thread that made the
/// change, possibly several at once.
package protocol BlockFileObserver: Sendable {
    func blockFile(_ path: String, did operation: BlockFileOperation)
}
