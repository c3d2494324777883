// A raw image: the guest disk is the file, byte for byte. Its size is the
// file's length rounded up to a whole sector (the tail reads as zeroes), and
// its block status is the file's own data/hole layout.
//
// Writes go straight to the file. Zero writes and discards use fallocate the
// way QEMU's file driver does (BlockFile's zeroWithoutWriting and discard,
// else zero buffers are written), so the host allocation after a qemu-io
// session matches QEMU's too.
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A raw image: the file is the guest disk. Throws `Qcow2Error` throughout.
public final class RawImage: WritableBlockImage, Sendable {
    package let file: BlockFile
    /// The file's length rounded up to whole 512-byte sectors.
    public var size: UInt64 { sizeStorage.load(ordering: .relaxed) }
    /// Changed only by `truncate` (RawTruncate.swift).
    let sizeStorage: Atomic<UInt64>
    /// Always `.raw`.
    public var format: ImageFormat { .raw }
    /// The path the image was opened with.
    public var filename: String { file.path }
    /// Always nil: raw images have no backing file.
    public var backing: BlockImage? { nil }
    /// Whether the image was opened for writing.
    public var isWritable: Bool { file.isWritable }

    /// Whether the format was probed rather than named. QEMU then treats
    /// the image as having 512-byte sectors for writes and refuses writes
    /// that would make sector 0 look like another format's header (else the
    /// next open would probe a guest-written header, a classic attack).
    /// Set by whoever opened the image, before any write.
    package var isProbed: Bool {
        get { probed.load(ordering: .relaxed) }
        set { probed.store(newValue, ordering: .relaxed) }
    }
    private let probed = Atomic<Bool>(false)

    package init(file: BlockFile) throws {
        self.file = file
        sizeStorage = Atomic(try file.sectorRoundedSize())
    }

    /// Opens the raw image at `path`, locked as `ImageOpener.open` locks.
    /// Throws `Qcow2Error.openFailed` (or `notRegularFile`) as QEMU's file
    /// driver words it, or `lockConflict`.
    public static func open(path: String, writable: Bool = false, locking: ImageLocking = .standard) throws -> RawImage {
        try ImageOpener.openLocked(path: path, format: .raw, writable: writable, locking: locking) {
            try RawImage(file: $0)
        }
    }

    /// Fills `buffer` with the bytes at `offset` (past the end of the file:
    /// zeroes). Throws `Qcow2Error` on I/O errors or a range past `size`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, buffer.count)
        // Past the end of the file (the sector-rounding tail), reads give zeroes.
        try file.read(into: buffer, at: offset)
    }

    /// Data or hole, from the file's extents. Throws `Qcow2Error` on I/O errors.
    public func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        try checkStatusQuery(offset, length)
        let extent = file.extent(at: offset, length: length, totalSize: size)
        return BlockStatus(length: extent.length, isData: extent.isData, isZero: !extent.isData,
                           isAllocated: true, hostOffset: offset, hostFile: file.path)
    }

    /// Closes the file. Throws `Qcow2Error.io` when closing fails.
    public func close() throws {
        try file.close()
    }

    // MARK: Writes

    /// Writes `buffer` at `offset`. Throws `Qcow2Error` (read-only image,
    /// range past `size`, I/O errors).
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

    /// Makes the range read as zeroes, punching a hole with `mayUnmap`.
    /// Throws `Qcow2Error` as `write` does.
    public func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws {
        try writeZeroes(at: offset, length: length, mayUnmap: mayUnmap, allowFallback: true)
    }

    /// Zero writes with qemu-io's `-n`: without `allowFallback` the range is
    /// never zeroed by writing zero buffers; when only that would do, the
    /// request fails with ENOTSUP. A probed image counts in 512-byte sectors,
    /// so a partial sector always needs that fallback.
    package func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool, allowFallback: Bool) throws {
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

    /// Zeroes a range as QEMU's file driver does, then as the block layer
    /// falls back: by writing zeroes.
    private func zeroRange(_ offset: UInt64, _ length: UInt64, mayUnmap: Bool, allowFallback: Bool) throws {
        if try file.zeroWithoutWriting(offset: offset, length: length, mayUnmap: mayUnmap) { return }
        guard allowFallback else { throw Qcow2Error.io(step: "write zeroes", errno: ENOTSUP) }
        try writeZeroBuffers(offset, length)
    }

    /// Punches a hole where the file system allows it. Throws `Qcow2Error`
    /// as `write` does.
    public func discard(at offset: UInt64, length: UInt64) throws {
        try checkWritable(offset, length)
        try file.discard(offset: offset, length: length)
    }

    /// Raw has no compressed clusters (qemu-io: "Operation not supported").
    /// Throws `Qcow2Error`: raw images cannot store compressed data.
    public func writeCompressed(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkWritable(offset, UInt64(buffer.count))
        throw Qcow2Error.io(step: "compressed write", errno: ENOTSUP)
    }

    /// Makes everything written durable (fdatasync). Throws `Qcow2Error.io`.
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
}
