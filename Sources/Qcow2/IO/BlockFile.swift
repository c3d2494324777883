// The one place the codec touches the file system: the only owner of an
// image file's descriptor. Every system call on it is here: positional I/O
// (whole buffers, short transfers continued), length, fallocate, lseek for
// holes, fstat, sync. Offsets come from image metadata, so each range is
// checked to fit a signed 64-bit file offset before it reaches the kernel.
// Policies built on these calls (QEMU's zero-write order, extents) live in
// the sibling files FileZeroing.swift and FileExtents.swift. Image locking
// (QEMU's lock bytes, FileLockBytes.swift) is taken on this descriptor too:
// an open takes no locks; the opener then says what its user needs and
// shares (`setAccess`), as QEMU sets a node's permissions once it knows its
// format and users.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage
import CSystemShims
import Synchronization

func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// An open file, read with positional I/O so that several threads can share it.
package final class BlockFile: Sendable {
    package let path: String
    package let isWritable: Bool
    private let descriptor: FileDescriptor
    /// Set once by `close()` (or a refused open): later closes do nothing.
    private let isClosed = Atomic<Bool>(false)
    /// The fallocate modes the file system refused (FileZeroing.swift).
    let fallocateSupport = Mutex(FallocateSupport())
    /// QEMU's cache=unsafe (BDRV_O_NO_FLUSH): `flush()` does nothing. Set
    /// before the file is shared; for outputs nobody needs durable until the
    /// whole job is done (qemu-img convert's default for its target).
    package var ignoresFlushes: Bool {
        get { flushesIgnored.load(ordering: .relaxed) }
        set { flushesIgnored.store(newValue, ordering: .relaxed) }
    }
    private let flushesIgnored = Atomic<Bool>(false)
    /// Whether this file's locks are taken (locking=on/auto where the kernel
    /// has open file description locks).
    package let isLocking: Bool
    /// What the user of this descriptor needs and shares, and the lock bytes
    /// that say so.
    private let lockState = Mutex<(access: BlockAccess, bytes: FileLockBytes)>((.none, FileLockBytes()))
    /// Told of every change to the file (power-loss tests; nil otherwise).
    private let observer: (any BlockFileObserver)?
    /// Set when the file is open with O_DIRECT (cache=none/directsync):
    /// its alignment and bounce buffers (FileDirectIO.swift).
    let directIO: DirectIO?
    /// Whether the file bypasses the host page cache (O_DIRECT).
    package var isDirect: Bool { directIO != nil }

    /// Opens `path` read-only or read-write, taking no locks yet. Errors read
    /// like QEMU's ("Could not open 'x': No such file or directory" is
    /// composed by callers).
    /// With `direct` the file is opened O_DIRECT (QEMU's cache.direct=on);
    /// a file system that refuses it is `directIOUnsupported`.
    package convenience init(path: String, writable: Bool, locking: FileLockingMode = .auto, direct: Bool = false) throws {
        try self.init(path: path, writable: writable, locking: locking, observer: nil, direct: direct)
    }

    /// Opens `path` as above, telling `observer` of every change made
    /// through this descriptor (BlockFileObserver.swift; for tests).
    package init(path: String, writable: Bool, locking: FileLockingMode, observer: (any BlockFileObserver)?,
                 direct: Bool = false) throws {
        self.path = path
        self.isWritable = writable
        self.isLocking = Self.locks(locking)
        self.observer = observer
        let mode: FileDescriptor.AccessMode = writable ? .readWrite : .readOnly
        let options: FileDescriptor.OpenOptions = direct ? [.closeOnExec, .init(rawValue: qk_o_direct())] : [.closeOnExec]
        let opened: FileDescriptor
        do {
            opened = try FileDescriptor.open(FilePath(path), mode, options: options)
        } catch let error as Errno {
            // As QEMU: if only O_DIRECT is refused, say so.
            if direct, error == .invalidArgument,
               let plain = try? FileDescriptor.open(FilePath(path), mode, options: [.closeOnExec]) {
                try? plain.close()
                throw Qcow2Error.directIOUnsupported(path: path)
            }
            throw Qcow2Error.io(step: "open", errno: error.rawValue)
        }
        do {
            directIO = direct ? try Self.probeDirectIO(opened) : nil
        } catch {
            try? opened.close()
            throw error
        }
        descriptor = opened
        try refuseDirectory()
    }

    /// The alignment O_DIRECT needs on `descriptor`, by test reads at
    /// offset 0 (FileDirectIO.swift says which).
    private static func probeDirectIO(_ descriptor: FileDescriptor) throws -> DirectIO {
        try DirectIO.probe { buffer, count in
            pread(descriptor.rawValue, buffer, count, 0) >= 0 || errno != EINVAL
        }
    }

    /// Whether `mode` takes locks here. QEMU falls back to process-wide
    /// POSIX locks for locking=on where open file description locks are
    /// missing; they are lost when any descriptor of the file is closed, so
    /// nothing is locked here instead, with a warning.
    private static func locks(_ mode: FileLockingMode) -> Bool {
        switch mode {
        case .off: return false
        case .auto: return FileLockBytes.available
        case .on:
            if !FileLockBytes.available {
                Qcow2Diagnostics.report(Qcow2Diagnostic(
                    .errorReport, "warning: File lock requested but OFD locking syscall is unavailable; the image is not locked"))
            }
            return FileLockBytes.available
        }
    }

    private init(path: String, writable: Bool, isLocking: Bool, descriptor: FileDescriptor) {
        self.path = path
        self.isWritable = writable
        self.isLocking = isLocking
        self.descriptor = descriptor
        observer = nil
        directIO = nil
    }

    private func refuseDirectory() throws {
        // A directory opens fine read-only; reading it fails later with EISDIR.
        // Refuse it now, in QEMU's file driver's words.
        var st = stat()
        if fstat(descriptor.rawValue, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            try? descriptor.close()
            isClosed.store(true, ordering: .relaxed)
            throw Qcow2Error.notRegularFile(path: path)
        }
    }

    /// Creates a file for writing; an existing file is truncated when
    /// `replacing`, refused (EEXIST) otherwise. As QEMU's file driver
    /// creates, the file is truncated only once this descriptor holds write
    /// and resize and nobody else may resize it (`BlockAccess.creation`), so
    /// an image another process uses is refused, not emptied. The file keeps
    /// that access; the creator sets its own afterwards.
    package static func create(path: String, replacing: Bool = true, locking: FileLockingMode = .auto) throws -> BlockFile {
        let file: BlockFile
        do {
            let fd = try FileDescriptor.open(
                FilePath(path), .readWrite,
                options: replacing ? [.create, .closeOnExec] : [.create, .exclusiveCreate, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
            file = BlockFile(path: path, writable: true, isLocking: locks(locking), descriptor: fd)
        } catch let error as Errno {
            throw Qcow2Error.io(step: "create", errno: error.rawValue)
        }
        do {
            try file.refuseDirectory()
            try file.setAccess(.creation)
            // Only a file that has data is emptied: truncating a new, empty
            // file too made ext4 give a converted output one block more than
            // qemu-img's (measured; likely its flush on close after a
            // truncation to zero).
            if try file.size() != 0 { try file.truncate(to: 0) }
        } catch {
            try? file.close()
            throw error
        }
        return file
    }

    deinit {
        if !isClosed.load(ordering: .relaxed) {
            releaseLocks()
            try? descriptor.close()
        }
    }

    package func close() throws {
        // Exactly one caller closes the descriptor, however many race here.
        guard !isClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        releaseLocks()
        do { try descriptor.close() } catch let error as Errno {
            throw Qcow2Error.io(step: "close", errno: error.rawValue)
        }
    }

    // MARK: Locks

    /// Drops every lock byte before the descriptor is closed, as QEMU drops
    /// a node's permissions before closing it. Closing alone is not enough:
    /// a child process being spawned (by another thread) holds a copy of the
    /// descriptor until its exec, and with it the open file description and
    /// its locks, so an open right after the close could still conflict.
    private func releaseLocks() {
        guard isLocking else { return }
        lockState.withLock { state in
            state.bytes.commit(descriptor.rawValue, .none)
            state.access = .none
        }
    }

    /// What this descriptor's user needs and shares now.
    package var access: BlockAccess { lockState.withLock { $0.access } }

    /// Changes what this descriptor's user needs and shares, taking and
    /// dropping its lock bytes. Throws `Qcow2Error.lockConflict` when another
    /// descriptor of the file (any process) stands in the way; nothing
    /// changes then. Giving permissions up never fails.
    package func setAccess(_ new: BlockAccess) throws {
        try lockState.withLock { state in
            if isLocking {
                do {
                    try state.bytes.change(descriptor.rawValue, from: state.access, to: new)
                } catch let failure as LockFailure {
                    throw Qcow2Error.lockConflict(reason: failure.reason, path: path)
                }
            }
            state.access = new
        }
    }

    /// Opens the file again, read-write or read-only, for a user that needs
    /// `new` (QEMU's reopen with a new descriptor): this descriptor first
    /// takes what `new` adds and checks it against everyone else, then the
    /// new descriptor takes `new`'s locks. The caller closes this one
    /// afterwards (dropping its locks), or, if it keeps it, gives its old
    /// access back with `setAccess`. Throws `Qcow2Error.lockConflict` or the
    /// open's failure; this descriptor's locks are as before then.
    /// `direct` nil keeps this descriptor's O_DIRECT setting; whether
    /// flushes are ignored is kept.
    package func reopened(writable: Bool, access new: BlockAccess, direct: Bool? = nil) throws -> BlockFile {
        let old = access
        if isLocking {
            try lockState.withLock { state in
                do {
                    try state.bytes.prepare(descriptor.rawValue, from: state.access, to: new)
                } catch let failure as LockFailure {
                    throw Qcow2Error.lockConflict(reason: failure.reason, path: path)
                }
            }
        }
        do {
            let file = try BlockFile(path: path, writable: writable, locking: isLocking ? .on : .off, observer: observer,
                                     direct: direct ?? isDirect)
            file.ignoresFlushes = ignoresFlushes  // BDRV_O_NO_FLUSH survives a reopen
            // Checked above, so taking these cannot conflict.
            try file.lockState.withLock { state in
                if isLocking {
                    try state.bytes.apply(file.descriptor.rawValue, perm: new.perm,
                                          unshared: BlockPermissions.all.subtracting(new.shared), unlock: false)
                }
                state.access = new
            }
            return file
        } catch {
            try? setAccess(old)
            if let failure = error as? LockFailure { throw Qcow2Error.lockConflict(reason: failure.reason, path: path) }
            throw error
        }
    }

    // MARK: Positional I/O

    /// Reads exactly `buffer.count` bytes at `offset`. Bytes past the end of the
    /// file read as zeroes, as QEMU's file driver does for a short read.
    /// Returns how many bytes came from the file.
    @discardableResult
    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        let start = try ioRange(offset, buffer.count, "read")
        if let directIO, !directIO.fits(buffer.baseAddress, count: buffer.count, offset: offset) {
            return try directIO.read(into: buffer, at: offset) { piece, at in
                try transfer(into: piece, at: Int64(at), step: offset)
            }
        }
        let done = try transfer(into: buffer, at: start, step: offset)
        if done < buffer.count {
            UnsafeMutableRawBufferPointer(rebasing: buffer[done...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        return done
    }

    /// pread until `buffer` is full or the file ends (with O_DIRECT, a short
    /// read is the end: the rest would not be aligned). Returns the count.
    private func transfer(into buffer: UnsafeMutableRawBufferPointer, at start: Int64, step offset: UInt64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            let n: Int
            do {
                n = try descriptor.read(fromAbsoluteOffset: start + Int64(done), into: chunk)
            } catch let error as Errno {
                throw Qcow2Error.io(step: "read at offset \(offset)", errno: error.rawValue)
            }
            if n == 0 { break }
            done += n
            if directIO != nil && done < buffer.count { break }
        }
        return done
    }

    /// Reads `count` bytes at `offset`; throws `shortRead` naming `step` if the
    /// file ends first (for metadata, which must exist on disk).
    package func readExactly(_ count: Int, at offset: UInt64, step: String) throws -> [UInt8] {
        guard count >= 0, offset <= UInt64(Int64.max) else { throw Qcow2Error.shortRead(step: step, offset: offset, expected: count) }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try bytes.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        if got < count { throw Qcow2Error.shortRead(step: step, offset: offset, expected: count) }
        return bytes
    }

    /// Writes all of `buffer` at `offset`.
    package func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        let start = try ioRange(offset, buffer.count, "write")
        if let directIO, !directIO.fits(buffer.baseAddress, count: buffer.count, offset: offset) {
            try directIO.write(buffer, at: offset, read: { piece, at in
                try transfer(into: piece, at: Int64(at), step: offset)
            }, write: { piece, at in
                try transfer(piece, at: Int64(at), step: offset)
            })
        } else {
            try transfer(buffer, at: start, step: offset)
        }
        observer?.blockFile(path, did: .write(offset: offset, bytes: Array(buffer)))
    }

    /// pwrite until all of `buffer` is written.
    private func transfer(_ buffer: UnsafeRawBufferPointer, at start: Int64, step offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[done...])
            do {
                done += try descriptor.write(toAbsoluteOffset: start + Int64(done), chunk)
            } catch let error as Errno {
                throw Qcow2Error.io(step: "write at offset \(offset)", errno: error.rawValue)
            }
        }
    }

    package func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Copies `length` bytes at `offset` of `source` to `targetOffset` of this
    /// file inside the kernel (corresponds to copy_file_range; qemu-img
    /// convert -C). A file past its end reads as zeroes, as `read` does.
    package func copyRange(from source: BlockFile, at offset: UInt64, to targetOffset: UInt64, length: UInt64) throws {
        _ = try ioRange(offset, Int(clamping: length), "copy")
        _ = try ioRange(targetOffset, Int(clamping: length), "copy")
        var inOffset = Int64(offset), outOffset = Int64(targetOffset), left = Int64(length)
        copying: while left > 0 {
            let copied = retryingInterrupts {
                qk_copy_file_range(source.descriptor.rawValue, &inOffset, descriptor.rawValue, &outOffset, UInt(left))
            }
            switch copied {
            case let .failure(error): throw Qcow2Error.io(step: "copy at offset \(offset)", errno: error.rawValue)
            case .success(0):
                // The source ends here (its sector-rounded tail): zeroes.
                let zeroes = [UInt8](repeating: 0, count: Int(left))
                try write(zeroes, at: UInt64(outOffset))
                break copying
            case let .success(n): left -= n
            }
        }
        if let observer {
            let copied = try readExactly(Int(length), at: targetOffset, step: "observed copy")
            observer.blockFile(path, did: .write(offset: targetOffset, bytes: copied))
        }
    }

    /// A read or write range as a file offset: past Int64.max it is an I/O
    /// error (EIO), as in QEMU's block layer, not a trap.
    private func ioRange(_ offset: UInt64, _ count: Int, _ what: String) throws -> Int64 {
        guard Self.rangeErrno(offset, UInt64(count)) == 0 else {
            throw Qcow2Error.io(step: "\(what) at offset \(offset)", errno: EIO)
        }
        return Int64(offset)
    }

    // MARK: Durability

    /// Makes everything written so far durable (corresponds to fdatasync).
    package func flush() throws {
        if ignoresFlushes { return }
        if case let .failure(error) = retryingInterrupts({ fdatasync(descriptor.rawValue) }) {
            throw Qcow2Error.io(step: "flush", errno: error.rawValue)
        }
        observer?.blockFile(path, did: .flush)
    }

    /// A hint that `length` bytes at `offset` will be read soon
    /// (posix_fadvise WILLNEED): the kernel starts reading them in, so a walk
    /// over scattered tables keeps the device busy with several requests
    /// instead of waiting for each read in turn. Nothing happens for a range
    /// already cached, or one that is not a valid file range.
    package func willRead(offset: UInt64, length: UInt64) {
        guard length > 0, offset <= UInt64(Int64.max) - length else { return }
        _ = posix_fadvise(descriptor.rawValue, off_t(offset), off_t(length), POSIX_FADV_WILLNEED)
    }

    /// fsync(2), data and metadata, whatever `ignoresFlushes` says: how
    /// preallocation=full makes its zeroes durable.
    func sync() throws {
        if case let .failure(error) = retryingInterrupts({ fsync(descriptor.rawValue) }) {
            throw Qcow2Error.io(step: "sync", errno: error.rawValue)
        }
        observer?.blockFile(path, did: .flush)
    }

    // MARK: Length and identity

    /// The file's length in bytes.
    package func size() throws -> UInt64 {
        UInt64(try status().st_size)
    }

    /// The file's device and inode: two paths name the same image exactly when
    /// these match (how backing-chain loops are recognised).
    package func identity() throws -> FileIdentity {
        let st = try status()
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// Bytes actually allocated on the host (st_blocks * 512): qemu-img's "disk size".
    package func allocatedSize() throws -> UInt64 {
        UInt64(try status().st_blocks) * 512
    }

    private func status() throws -> stat {
        var st = stat()
        guard fstat(descriptor.rawValue, &st) == 0 else { throw Qcow2Error.io(step: "stat", errno: errno) }
        return st
    }

    /// Sets the file's length (corresponds to ftruncate). A length past
    /// Int64.max is refused with EINVAL, as ftruncate refuses a negative one.
    package func truncate(to length: UInt64) throws {
        guard length <= UInt64(Int64.max) else { throw Qcow2Error.io(step: "truncate to \(length)", errno: EINVAL) }
        if case let .failure(error) = retryingInterrupts({ ftruncate(descriptor.rawValue, off_t(length)) }) {
            throw Qcow2Error.io(step: "truncate", errno: error.rawValue)
        }
        observer?.blockFile(path, did: .truncate(length: length))
    }

    // MARK: Allocation (fallocate)

    /// Allocates host blocks for a range without changing their content
    /// (posix_fallocate: fallocate mode 0, or blocks written by the C
    /// library where the file system has no fallocate; extends the file
    /// if needed).
    package func allocate(offset: UInt64, length: UInt64) throws {
        guard length > 0 else { return }
        let code = rangeCheckedErrno(offset, length) {
            let rc = posix_fallocate(descriptor.rawValue, off_t(offset), off_t(length))
            if rc != 0 { errno = rc; return -1 }
            return 0
        }
        if code != 0 { throw Qcow2Error.io(step: Self.rangeStep("fallocate", offset, length), errno: code) }
        observer?.blockFile(path, did: .fallocate(mode: .allocate, offset: offset, length: length))
    }

    /// Deallocates a range, which then reads as zeroes (fallocate punch hole).
    package func punchHole(offset: UInt64, length: UInt64) throws {
        guard length > 0 else { return }
        let code = fallocate(.deallocate, offset: offset, length: length)
        if code != 0 { throw Qcow2Error.io(step: Self.rangeStep("punch hole", offset, length), errno: code) }
    }

    /// fallocate(2) itself: 0, or the errno, for callers that choose what
    /// to do next by it (QEMU's fallback orders). A range that does not fit
    /// a file offset gets the kernel's answer without reaching it.
    func fallocate(_ mode: FallocateMode, offset: UInt64, length: UInt64) -> Int32 {
        let code = rangeCheckedErrno(offset, length) {
            qk_fallocate(descriptor.rawValue, mode.rawValue, Int64(offset), Int64(length))
        }
        if code == 0 { observer?.blockFile(path, did: .fallocate(mode: mode, offset: offset, length: length)) }
        return code
    }

    // MARK: Sparse layout (lseek)

    /// Where the next data (SEEK_DATA) or hole (SEEK_HOLE; the end of file
    /// counts as one) starts at or after `offset`, or the errno: ENXIO when
    /// none follows.
    func seek(to target: SparseSeek, from offset: UInt64) -> Result<UInt64, Errno> {
        // The kernel's answer for an offset past any end of file.
        guard offset <= UInt64(Int64.max) else { return .failure(.noSuchAddressOrDevice) }
        let whence = target == .data ? SEEK_DATA : SEEK_HOLE
        return retryingInterrupts { lseek(descriptor.rawValue, off_t(offset), whence) }.map { UInt64($0) }
    }

    /// The next data at or after `offset` (SEEK_DATA), or nil if only a hole follows.
    package func nextData(from offset: UInt64) -> UInt64? {
        try? seek(to: .data, from: offset).get()
    }

    /// The next hole at or after `offset` (SEEK_HOLE); the end of file counts as a hole.
    package func nextHole(from offset: UInt64) -> UInt64? {
        try? seek(to: .hole, from: offset).get()
    }

    // MARK: System call edge

    /// Runs `call` (-1 and errno on failure) again while a signal interrupts
    /// it: the codec's one EINTR loop (swift-system's read and write above
    /// retry on their own).
    private func retryingInterrupts<T: FixedWidthInteger & SignedInteger>(_ call: () -> T) -> Result<T, Errno> {
        while true {
            let result = call()
            if result != -1 { return .success(result) }
            if errno != EINTR { return .failure(Errno(rawValue: errno)) }
        }
    }

    /// `call` on a range that fits a file offset: 0 or its errno.
    private func rangeCheckedErrno(_ offset: UInt64, _ length: UInt64, _ call: () -> Int32) -> Int32 {
        let code = Self.rangeErrno(offset, length)
        guard code == 0 else { return code }
        switch retryingInterrupts(call) {
        case .success: return 0
        case let .failure(error): return error.rawValue
        }
    }

    /// Whether [offset, offset + length) fits a signed 64-bit file offset:
    /// 0, or what the kernel answers fallocate otherwise (EINVAL for a
    /// negative offset, EFBIG for an end past the largest file).
    static func rangeErrno(_ offset: UInt64, _ length: UInt64) -> Int32 {
        if offset > UInt64(Int64.max) { return EINVAL }
        if length > UInt64(Int64.max) - offset { return EFBIG }
        return 0
    }

    /// The step of an error: the range too when it was the problem.
    private static func rangeStep(_ what: String, _ offset: UInt64, _ length: UInt64) -> String {
        rangeErrno(offset, length) == 0 ? what : "\(what) at offset \(offset), \(length) bytes"
    }
}

/// Which way `BlockFile.seek` looks.
enum SparseSeek { case data, hole }

/// Which file an open descriptor refers to, independent of the path used.
package struct FileIdentity: Hashable, Sendable {
    package var device: UInt64
    package var inode: UInt64
}
