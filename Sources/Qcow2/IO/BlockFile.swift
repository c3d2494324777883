// The one place the codec touches the file system: a thin owner of a file
// descriptor over swift-system, with whole-buffer positional I/O (pread and
// pwrite retried until done, EINTR retried by swift-system).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage
import CSystemShims

func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// An open file, read with positional I/O so that several threads can share it.
public final class BlockFile: @unchecked Sendable {
    public let path: String
    public let isWritable: Bool
    let descriptor: FileDescriptor
    private var isClosed = false
    /// QEMU's cache=unsafe (BDRV_O_NO_FLUSH): `flush()` does nothing. Set
    /// before the file is shared; for outputs nobody needs durable until the
    /// whole job is done (qemu-img convert's default for its target).
    public var ignoresFlushes = false

    /// Opens `path` read-only or read-write. Errors read like QEMU's
    /// ("Could not open 'x': No such file or directory" is composed by callers).
    public init(path: String, writable: Bool) throws {
        self.path = path
        self.isWritable = writable
        do {
            descriptor = try FileDescriptor.open(
                FilePath(path), writable ? .readWrite : .readOnly, options: [.closeOnExec])
        } catch let error as Errno {
            throw Qcow2Error.io(step: "open", errno: error.rawValue)
        }
        // A directory opens fine read-only; reading it fails later with EISDIR.
        // Refuse it now, in QEMU's file driver's words.
        var st = stat()
        if fstat(descriptor.rawValue, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            try? descriptor.close()
            isClosed = true
            throw Qcow2Error.notRegularFile(path: path)
        }
    }

    /// Creates (or truncates) a file for writing.
    public static func create(path: String) throws -> BlockFile {
        do {
            let fd = try FileDescriptor.open(
                FilePath(path), .readWrite, options: [.create, .truncate, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
            try fd.close()
        } catch let error as Errno {
            throw Qcow2Error.io(step: "create", errno: error.rawValue)
        }
        return try BlockFile(path: path, writable: true)
    }

    deinit {
        if !isClosed { try? descriptor.close() }
    }

    public func close() throws {
        guard !isClosed else { return }
        isClosed = true
        do { try descriptor.close() } catch let error as Errno {
            throw Qcow2Error.io(step: "close", errno: error.rawValue)
        }
    }

    /// Reads exactly `buffer.count` bytes at `offset`. Bytes past the end of the
    /// file read as zeroes, as QEMU's file driver does for a short read.
    /// Returns how many bytes came from the file.
    @discardableResult
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try checkOffset(offset, buffer.count, "read")
        var done = 0
        while done < buffer.count {
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            let n: Int
            do {
                n = try descriptor.read(fromAbsoluteOffset: Int64(offset) + Int64(done), into: chunk)
            } catch let error as Errno {
                throw Qcow2Error.io(step: "read at offset \(offset)", errno: error.rawValue)
            }
            if n == 0 { break }
            done += n
        }
        if done < buffer.count {
            UnsafeMutableRawBufferPointer(rebasing: buffer[done...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        return done
    }

    /// Reads `count` bytes at `offset`; throws `shortRead` naming `step` if the
    /// file ends first (for metadata, which must exist on disk).
    public func readExactly(_ count: Int, at offset: UInt64, step: String) throws -> [UInt8] {
        guard count >= 0, offset <= UInt64(Int64.max) else { throw Qcow2Error.shortRead(step: step, offset: offset, expected: count) }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try bytes.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        if got < count { throw Qcow2Error.shortRead(step: step, offset: offset, expected: count) }
        return bytes
    }

    /// Writes all of `buffer` at `offset`.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkOffset(offset, buffer.count, "write")
        var done = 0
        while done < buffer.count {
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[done...])
            do {
                done += try descriptor.write(toAbsoluteOffset: Int64(offset) + Int64(done), chunk)
            } catch let error as Errno {
                throw Qcow2Error.io(step: "write at offset \(offset)", errno: error.rawValue)
            }
        }
    }

    /// Offsets reach here from image metadata (a refcount table entry may
    /// hold any of bits 9...63): a range that does not fit a signed 64-bit
    /// file offset is an I/O error, as in QEMU's block layer, not a trap.
    private func checkOffset(_ offset: UInt64, _ count: Int, _ what: String) throws {
        guard offset <= UInt64(Int64.max) - UInt64(count) else {
            throw Qcow2Error.io(step: "\(what) at offset \(offset)", errno: EIO)
        }
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Makes everything written so far durable (corresponds to fdatasync).
    public func flush() throws {
        if ignoresFlushes { return }
        if fdatasync(descriptor.rawValue) != 0 {
            throw Qcow2Error.io(step: "flush", errno: errno)
        }
    }

    /// The file's length in bytes.
    public func size() throws -> UInt64 {
        var st = stat()
        guard fstat(descriptor.rawValue, &st) == 0 else { throw Qcow2Error.io(step: "stat", errno: errno) }
        return UInt64(st.st_size)
    }

    /// The file's device and inode: two paths name the same image exactly when
    /// these match (how backing-chain loops are recognised).
    public func identity() throws -> FileIdentity {
        var st = stat()
        guard fstat(descriptor.rawValue, &st) == 0 else { throw Qcow2Error.io(step: "stat", errno: errno) }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// Bytes actually allocated on the host (st_blocks * 512): qemu-img's "disk size".
    public func allocatedSize() throws -> UInt64 {
        var st = stat()
        guard fstat(descriptor.rawValue, &st) == 0 else { throw Qcow2Error.io(step: "stat", errno: errno) }
        return UInt64(st.st_blocks) * 512
    }

    /// Sets the file's length (corresponds to ftruncate).
    public func truncate(to length: UInt64) throws {
        if ftruncate(descriptor.rawValue, off_t(length)) != 0 {
            throw Qcow2Error.io(step: "truncate", errno: errno)
        }
    }

    /// Allocates host blocks for a range without changing their content
    /// (corresponds to fallocate mode 0; extends the file if needed).
    public func allocate(offset: UInt64, length: UInt64) throws {
        guard length > 0 else { return }
        let rc = posix_fallocate(descriptor.rawValue, off_t(offset), off_t(length))
        if rc != 0 { throw Qcow2Error.io(step: "fallocate", errno: rc) }
    }

    /// Deallocates a range, which then reads as zeroes (fallocate punch hole).
    public func punchHole(offset: UInt64, length: UInt64) throws {
        guard length > 0 else { return }
        let mode = Int32(0x02 /* FALLOC_FL_PUNCH_HOLE */ | 0x01 /* FALLOC_FL_KEEP_SIZE */)
        if qk_fallocate(descriptor.rawValue, mode, Int64(offset), Int64(length)) != 0 {
            throw Qcow2Error.io(step: "punch hole", errno: errno)
        }
    }

    /// The next data at or after `offset` (SEEK_DATA), or nil if only a hole follows.
    public func nextData(from offset: UInt64) -> UInt64? {
        let r = lseek(descriptor.rawValue, off_t(offset), 3 /* SEEK_DATA */)
        return r < 0 ? nil : UInt64(r)
    }

    /// The next hole at or after `offset` (SEEK_HOLE); the end of file counts as a hole.
    public func nextHole(from offset: UInt64) -> UInt64? {
        let r = lseek(descriptor.rawValue, off_t(offset), 4 /* SEEK_HOLE */)
        return r < 0 ? nil : UInt64(r)
    }
}

/// Which file an open descriptor refers to, independent of the path used.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
}
