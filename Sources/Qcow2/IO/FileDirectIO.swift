// O_DIRECT for cache=none and directsync (QEMU's cache.direct=on): what
// alignment the descriptor needs, found as QEMU's file driver finds it, and
// the bounce buffers through which every other request goes. Guest data,
// headers and tables all pass through `BlockFile.read`/`write`, so metadata
// takes the same aligned path. System calls stay in BlockFile.swift; this
// file only decides how a request is cut and copied.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// How an O_DIRECT descriptor must be addressed, and the reusable buffers
/// that make any request fit.
final class DirectIO: Sendable {
    /// File offsets and lengths must be multiples of this (QEMU's
    /// request_alignment: 512 to 4096).
    let requestAlignment: Int
    /// Memory addresses must be multiples of this (QEMU's buf_align).
    let bufferAlignment: Int
    /// Bytes per bounce buffer; longer unaligned requests go in pieces.
    static let bounceSize = 256 * 1024
    /// Alignment of bounce buffers: enough for any probe result.
    private static let bounceAlignment = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
    /// Bounce buffers not in use (their addresses), kept so that after the
    /// first unaligned requests later ones allocate nothing.
    private let spare: Mutex<[UInt]>
    /// Unaligned writes read and rewrite whole blocks around their bytes:
    /// two of them at once could each restore the other's old bytes.
    private let readModifyWrite = Mutex(())

    private init(requestAlignment: Int, bufferAlignment: Int) {
        self.requestAlignment = requestAlignment
        self.bufferAlignment = bufferAlignment
        var addresses: [UInt] = []
        addresses.reserveCapacity(64)
        spare = Mutex(addresses)
    }

    deinit {
        for address in spare.withLock({ $0 }) {
            UnsafeMutableRawPointer(bitPattern: address)?.deallocate()
        }
    }

    /// Finds the alignment as QEMU's raw_probe_alignment does for a file:
    /// the smallest read length (1, 512, ..., 4096 bytes at offset 0) the
    /// kernel accepts, then the smallest buffer address alignment; a length
    /// of 1 working says nothing, so the page size (at least 4096) is taken.
    /// `read` reads `count` bytes at offset 0 into `buffer`, answering
    /// false only for EINVAL (other errors do not tell about alignment).
    static func probe(_ read: (UnsafeMutableRawPointer, Int) -> Bool) throws -> DirectIO {
        let largest = bounceAlignment
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 2 * largest, alignment: largest)
        defer { buffer.deallocate() }
        let candidates = [1, 512, 1024, 2048, 4096]
        guard let length = candidates.first(where: { read(buffer, $0) }) else {
            throw Qcow2Error.directIOAlignmentUnknown
        }
        let request = length == 1 ? largest : length
        guard let address = candidates.first(where: { read(buffer + $0, largest) }) else {
            throw Qcow2Error.directIOAlignmentUnknown
        }
        return DirectIO(requestAlignment: request, bufferAlignment: address == 1 ? request : address)
    }

    /// Whether a request can go to the descriptor as it is.
    func fits(_ address: UnsafeRawPointer?, count: Int, offset: UInt64) -> Bool {
        guard let address else { return count == 0 }
        return UInt(bitPattern: address) % UInt(bufferAlignment) == 0
            && offset % UInt64(requestAlignment) == 0 && count % requestAlignment == 0
    }

    // MARK: Bounced requests

    /// Reads `buffer.count` bytes at `offset` through a bounce buffer, in
    /// aligned pieces; `transfer` reads an aligned piece, stopping early
    /// only at the end of the file. Bytes past it read as zeroes. Returns
    /// how many came from the file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64,
              _ transfer: (UnsafeMutableRawBufferPointer, UInt64) throws -> Int) throws -> Int {
        try withBounce { bounce in
            var done = 0, fromFile = 0
            while done < buffer.count {
                let position = offset + UInt64(done)
                let (start, length) = piece(at: position, end: offset + UInt64(buffer.count))
                let got = try transfer(UnsafeMutableRawBufferPointer(rebasing: bounce[0..<length]), start)
                let skip = Int(position - start)
                let wanted = min(length - skip, buffer.count - done)
                let available = max(0, min(wanted, got - skip))
                if available > 0 {
                    (buffer.baseAddress! + done).copyMemory(from: bounce.baseAddress! + skip, byteCount: available)
                }
                fromFile += available
                done += wanted
                if got < length { break }
            }
            if fromFile < buffer.count {
                UnsafeMutableRawBufferPointer(rebasing: buffer[fromFile...]).initializeMemory(as: UInt8.self, repeating: 0)
            }
            return fromFile
        }
    }

    /// Writes `buffer` at `offset` through a bounce buffer: the blocks it
    /// covers only in part are read first, so their other bytes stay (past
    /// the end of the file they are zeroes, and the file grows to the
    /// block's end, as QEMU's padded requests make it grow).
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64,
               read: (UnsafeMutableRawBufferPointer, UInt64) throws -> Int,
               write: (UnsafeRawBufferPointer, UInt64) throws -> Void) throws {
        let block = requestAlignment
        try readModifyWrite.withLock { _ in
            try withBounce { bounce in
                var done = 0
                while done < buffer.count {
                    let position = offset + UInt64(done)
                    let (start, length) = piece(at: position, end: offset + UInt64(buffer.count))
                    let skip = Int(position - start)
                    let count = min(length - skip, buffer.count - done)
                    if skip != 0 {
                        try fill(bounce, from: 0, block, at: start, read)
                    }
                    let tail = skip + count
                    if tail % block != 0 {
                        let from = tail - tail % block
                        if from != 0 || skip == 0 { try fill(bounce, from: from, block, at: start + UInt64(from), read) }
                    }
                    (bounce.baseAddress! + skip).copyMemory(from: buffer.baseAddress! + done, byteCount: count)
                    try write(UnsafeRawBufferPointer(rebasing: bounce[0..<length]), start)
                    done += count
                }
            }
        }
    }

    /// The aligned piece of the file a bounced request at `position` (ending
    /// at `end`) works on next: its start and length.
    private func piece(at position: UInt64, end: UInt64) -> (start: UInt64, length: Int) {
        let block = UInt64(requestAlignment)
        let start = position - position % block
        let alignedEnd = end % block == 0 ? end : end - end % block + block
        return (start, Int(min(alignedEnd - start, UInt64(Self.bounceSize))))
    }

    /// Reads one block into `bounce` at `from`; past the end of file, zeroes.
    private func fill(_ bounce: UnsafeMutableRawBufferPointer, from: Int, _ count: Int, at offset: UInt64,
                      _ read: (UnsafeMutableRawBufferPointer, UInt64) throws -> Int) throws {
        let part = UnsafeMutableRawBufferPointer(rebasing: bounce[from..<(from + count)])
        let got = try read(part, offset)
        if got < count {
            UnsafeMutableRawBufferPointer(rebasing: part[got...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// Runs `body` with a bounce buffer, reused from earlier requests.
    private func withBounce<T>(_ body: (UnsafeMutableRawBufferPointer) throws -> T) throws -> T {
        let address = spare.withLock { $0.popLast() }
        let pointer = address.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
            ?? UnsafeMutableRawPointer.allocate(byteCount: Self.bounceSize, alignment: Self.bounceAlignment)
        defer { spare.withLock { $0.append(UInt(bitPattern: pointer)) } }
        return try body(UnsafeMutableRawBufferPointer(start: pointer, count: Self.bounceSize))
    }
}
