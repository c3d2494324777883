// A raw image: the guest disk is the file, byte for byte. Its size is the
// file's length rounded up to a whole sector (the tail reads as zeroes), and
// its block status is the file's own data/hole layout.
//
// Writes go straight to the file. Zero writes and discards use fallocate the
// way QEMU's file driver does (zero range, else punch hole + allocate, else
// allocate past the end, else write zeroes), so the host allocation after a
// qemu-io session matches QEMU's too.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSystemShims
import Synchronization

public final class RawImage: WritableBlockImage, @unchecked Sendable {
    public let file: BlockFile
    public let size: UInt64
    public var format: ImageFormat { .raw }
    public var filename: String { file.path }
    public var backing: BlockImage? { nil }
    public var isWritable: Bool { file.isWritable }

    /// Whether the format was probed rather than named. QEMU then treats
    /// the image as having 512-byte sectors for writes and refuses writes
    /// that would make sector 0 look like another format's header (else the
    /// next open would probe a guest-written header, a classic attack).
    /// Set by whoever opened the image, before any write.
    public var isProbed = false

    /// Which fallocate modes the file system turned out not to support
    /// (as QEMU remembers per open file, to stop trying them).
    private struct FallocateSupport {
        var zeroRange = true
        var punchHole = true
    }
    private let support = Mutex(FallocateSupport())
    private var zeroRangeUnsupported: Bool {
        get { support.withLock { !$0.zeroRange } }
        set { support.withLock { $0.zeroRange = !newValue } }
    }
    private var punchHoleUnsupported: Bool {
        get { support.withLock { !$0.punchHole } }
        set { support.withLock { $0.punchHole = !newValue } }
    }

    public init(file: BlockFile) throws {
        self.file = file
        size = try file.sectorRoundedSize()
    }

    public static func open(path: String, writable: Bool = false) throws -> RawImage {
        try RawImage(file: BlockFile(path: path, writable: writable))
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, buffer.count)
        // Past the end of the file (the sector-rounding tail), reads give zeroes.
        try file.read(into: buffer, at: offset)
    }

    public func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        try checkStatusQuery(offset, length)
        let extent = file.extent(at: offset, length: length, totalSize: size)
        return BlockStatus(length: extent.length, isData: extent.isData, isZero: !extent.isData,
                           isAllocated: true, hostOffset: offset, hostFile: file.path)
    }

    public func close() throws {
        try file.close()
    }

    // MARK: Writes

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkWritable(offset, UInt64(buffer.count))
        guard buffer.count > 0 else { return }
        guard isProbed else { return try file.write(buffer, at: offset) }
        // Probed: whole sectors only, partial ones read, modified and written
        // back (callers writing one sector from several threads at once must
        // order those writes themselves).
        let end = offset + UInt64(buffer.count)
        var done = 0
        if offset % sectorSize != 0 || end - offset < sectorSize {
            let sectorStart = offset - offset % sectorSize
            done = Int(min(end, sectorStart + sectorSize) - offset)
            try rewriteSector(at: sectorStart) { sector in
                for i in 0..<done { sector[Int(offset - sectorStart) + i] = buffer[i] }
            }
        }
        let tail = Int(end % sectorSize)
        let middleEnd = max(done, buffer.count - tail)
        if middleEnd > done {
            try writeWhole(UnsafeRawBufferPointer(rebasing: buffer[done..<middleEnd]), at: offset + UInt64(done))
        }
        if middleEnd < buffer.count {
            try rewriteSector(at: end - UInt64(tail)) { sector in
                for i in 0..<tail { sector[i] = buffer[middleEnd + i] }
            }
        }
    }

    /// Writes sector-aligned data of a probed image, minding sector 0.
    private func writeWhole(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        if offset < sectorSize {
            try RawProbeGuard.checkFirstSector(after: buffer, at: offset, in: file)
        }
        try file.write(buffer, at: offset)
    }

    /// Reads the sector at `start` (zeroes past the end of the file), lets
    /// `change` modify it and writes it back whole.
    private func rewriteSector(at start: UInt64, _ change: (inout [UInt8]) -> Void) throws {
        var sector = [UInt8](repeating: 0, count: Int(sectorSize))
        try sector.withUnsafeMutableBytes { _ = try file.read(into: $0, at: start) }
        change(&sector)
        try sector.withUnsafeBytes { try writeWhole($0, at: start) }
    }

    private var sectorSize: UInt64 { RawProbeGuard.sectorSize }

    public func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws {
        try writeZeroes(at: offset, length: length, mayUnmap: mayUnmap, allowFallback: true)
    }

    /// Zero writes with qemu-io's `-n`: without `allowFallback` the range is
    /// never zeroed by writing zero buffers; when only that would do, the
    /// request fails with ENOTSUP. A probed image counts in 512-byte sectors,
    /// so a partial sector always needs that fallback.
    public func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool, allowFallback: Bool) throws {
        try checkWritable(offset, length)
        guard length > 0 else { return }
        guard isProbed else {
            return try zeroRange(offset, length, mayUnmap: mayUnmap, allowFallback: allowFallback)
        }
        // Probed: partial sectors at either end are rewritten with zeroes
        // (as data), whole sectors between them zeroed the efficient way.
        let end = offset + length
        let head = offset % sectorSize, tail = end % sectorSize
        if (head != 0 || tail != 0) && !allowFallback {
            throw Qcow2Error.io(step: "write zeroes", errno: ENOTSUP)
        }
        var start = offset
        if head != 0 || length < sectorSize {
            let sectorStart = offset - head
            let stop = min(end, sectorStart + sectorSize)
            try rewriteSector(at: sectorStart) { sector in
                for i in Int(head)..<Int(stop - sectorStart) { sector[i] = 0 }
            }
            start = stop
        }
        let middleEnd = max(start, end - tail)
        if middleEnd > start {
            try zeroRange(start, middleEnd - start, mayUnmap: mayUnmap, allowFallback: allowFallback)
        }
        if middleEnd < end {
            try rewriteSector(at: middleEnd) { sector in
                for i in 0..<Int(tail) { sector[i] = 0 }
            }
        }
    }

    /// Zeroes a range as QEMU's file driver does.
    private func zeroRange(_ offset: UInt64, _ length: UInt64, mayUnmap: Bool, allowFallback: Bool) throws {
        if mayUnmap && !punchHoleUnsupported {
            // Unmapping while guaranteeing zeroes: a punched hole reads as zeroes.
            switch fallocateResult(.punchHole, offset, length) {
            case 0: return
            case ENOTSUP, EOPNOTSUPP, EINVAL, EBUSY: break
            case let code: throw Qcow2Error.io(step: "write zeroes", errno: code)
            }
        }
        if try zeroWithoutWriting(offset, length) { return }
        guard allowFallback else { throw Qcow2Error.io(step: "write zeroes", errno: ENOTSUP) }
        try writeZeroBuffers(offset, length)
    }

    public func discard(at offset: UInt64, length: UInt64) throws {
        try checkWritable(offset, length)
        guard length > 0, !punchHoleUnsupported else { return }
        switch fallocateResult(.punchHole, offset, length) {
        // A file system that cannot punch holes keeps the data; QEMU treats
        // discard as a hint and reports success then.
        case 0: return
        case ENOTSUP, EOPNOTSUPP: punchHoleUnsupported = true
        case let code: throw Qcow2Error.io(step: "discard", errno: code)
        }
    }

    /// Raw has no compressed clusters (qemu-io: "Operation not supported").
    public func writeCompressed(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkWritable(offset, UInt64(buffer.count))
        throw Qcow2Error.io(step: "compressed write", errno: ENOTSUP)
    }

    public func flush() throws {
        guard isWritable else { return }
        try file.flush()
    }

    /// The request lies within the image and the image is writable.
    private func checkWritable(_ offset: UInt64, _ length: UInt64) throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= size else {
            throw Qcow2Error.requestOutOfRange(offset: offset, length: length, size: size)
        }
    }

    /// Zeroes the range through fallocate alone, in QEMU's order of
    /// preference; false when the file system offers no way to.
    private func zeroWithoutWriting(_ offset: UInt64, _ length: UInt64) throws -> Bool {
        if !zeroRangeUnsupported {
            switch fallocateResult(.zeroRange, offset, length) {
            case 0: return true
            case ENOTSUP, EOPNOTSUPP: zeroRangeUnsupported = true
            case EINVAL: break   // some file systems refuse unaligned ranges
            case let code: throw Qcow2Error.io(step: "write zeroes", errno: code)
            }
        }
        if !punchHoleUnsupported {
            switch fallocateResult(.punchHole, offset, length) {
            case 0:
                // Re-allocate so the range stays backed by disk space.
                let code = fallocateResult(.allocate, offset, length)
                if code == 0 { return true }
                if code != ENOTSUP && code != EOPNOTSUPP { throw Qcow2Error.io(step: "write zeroes", errno: code) }
            case ENOTSUP, EOPNOTSUPP: punchHoleUnsupported = true
            case EINVAL: break
            case let code: throw Qcow2Error.io(step: "write zeroes", errno: code)
            }
        }
        // Extending the file: allocated blocks past the old end read as zeroes.
        if offset >= (try file.size()) {
            switch fallocateResult(.allocate, offset, length) {
            case 0: return true
            case ENOTSUP, EOPNOTSUPP: break
            case let code: throw Qcow2Error.io(step: "write zeroes", errno: code)
            }
        }
        return false
    }

    private func writeZeroBuffers(_ offset: UInt64, _ length: UInt64) throws {
        let chunk = Int(min(length, 1 << 20))
        let zeroes = [UInt8](repeating: 0, count: chunk)
        var done: UInt64 = 0
        while done < length {
            let n = Int(min(UInt64(chunk), length - done))
            try zeroes.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[..<n]), at: offset + done) }
            done += UInt64(n)
        }
    }

    private enum FallocateMode: Int32 {
        case allocate = 0
        case punchHole = 0x03   // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        case zeroRange = 0x10   // FALLOC_FL_ZERO_RANGE
    }

    /// fallocate(2) on the image file; 0 or the errno.
    private func fallocateResult(_ mode: FallocateMode, _ offset: UInt64, _ length: UInt64) -> Int32 {
        while true {
            if qk_fallocate(file.descriptor.rawValue, mode.rawValue, Int64(offset), Int64(length)) == 0 { return 0 }
            if errno != EINTR { return errno }
        }
    }
}
