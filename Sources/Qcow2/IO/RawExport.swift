// Writing a whole guest disk (through its backing chain) into a sparse raw
// file, as `qemu-img convert -O raw` does: the file gets exactly the virtual
// size, ranges the chain reports as zero are never read or written, and
// blocks of read data that turn out to be all zeroes stay holes too.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum RawExport {
    /// Bytes read per request: large sequential reads, one buffer reused.
    public static let chunkSize = 2 << 20
    /// Zero runs at least this long (and aligned to it) are left as holes:
    /// qemu-img convert's default minimum sparse size (-S 4k).
    public static let sparseBlock = 4096

    public enum Failure: Error, CustomStringConvertible {
        case create(path: String, errno: Int32)
        case read(offset: UInt64, error: Error)
        case write(offset: UInt64, error: Error)

        public var description: String {
            switch self {
            case let .create(path, code): return "Could not create '\(path)': \(String(cString: strerror(code)))"
            case let .read(offset, error): return "error while reading at byte \(offset): \(error)"
            case let .write(offset, error): return "error while writing at byte \(offset): \(error)"
            }
        }
    }

    /// Writes `image`'s guest data to a new (or truncated) raw file at `path`.
    public static func write(_ image: BlockImage, to path: String) throws {
        let output: BlockFile
        do {
            output = try BlockFile.create(path: path)
        } catch let Qcow2Error.io(_, code) {
            throw Failure.create(path: path, errno: code)
        }
        defer { try? output.close() }
        let size = image.size
        do {
            try output.truncate(to: size)
            // QEMU allocates the first block of every raw file it creates (so
            // that O_DIRECT alignment can be probed later); do the same, so
            // that the result's disk usage matches too.
            let first = [UInt8](repeating: 0, count: Int(min(size, UInt64(sparseBlock))))
            try output.write(first, at: 0)
        } catch { throw Failure.write(offset: 0, error: error) }

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: UInt64 = 0
        while offset < size {
            let status: ChainBlockStatus
            do { status = try image.chainBlockStatus(at: offset, length: size - offset) } catch {
                throw Failure.read(offset: offset, error: error)
            }
            let end = offset + status.status.length
            // Zero ranges (including preallocated holes) are already holes.
            if !status.status.isZero {
                var position = offset
                while position < end {
                    let count = Int(min(UInt64(chunkSize), end - position))
                    let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[..<count])
                    do { try image.read(into: chunk, at: position) } catch {
                        throw Failure.read(offset: position, error: error)
                    }
                    try writeNonZero(chunk, at: position, to: output)
                    position += UInt64(count)
                }
            }
            offset = end
        }
    }

    /// Writes the parts of `chunk` that are not whole zero blocks (blocks
    /// aligned to `sparseBlock` in the output), one write per run.
    static func writeNonZero(_ chunk: UnsafeMutableRawBufferPointer, at offset: UInt64, to output: BlockFile) throws {
        var index = 0
        var runStart: Int?
        while index < chunk.count {
            // Up to the next block boundary in the output.
            let toBoundary = sparseBlock - Int(UInt64(offset + UInt64(index)) % UInt64(sparseBlock))
            let blockEnd = min(chunk.count, index + toBoundary)
            let block = UnsafeRawBufferPointer(rebasing: chunk[index..<blockEnd])
            // Partial blocks (at the edges of a range) are written as they are.
            let skip = block.count == sparseBlock && isAllZero(block)
            if skip, let start = runStart {
                try flush(chunk, start..<index, offset, output)
                runStart = nil
            } else if !skip && runStart == nil {
                runStart = index
            }
            index = blockEnd
        }
        if let start = runStart { try flush(chunk, start..<chunk.count, offset, output) }
    }

    private static func flush(_ chunk: UnsafeMutableRawBufferPointer, _ range: Range<Int>, _ offset: UInt64, _ output: BlockFile) throws {
        let position = offset + UInt64(range.lowerBound)
        do { try output.write(UnsafeRawBufferPointer(rebasing: chunk[range]), at: position) } catch {
            throw Failure.write(offset: position, error: error)
        }
    }
}

/// Whether every byte is zero: the first word is zero and every byte equals
/// the one a word later (memcmp of the buffer against itself, shifted).
func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return true }
    let head = min(bytes.count, 16)
    for i in 0..<head where bytes[i] != 0 { return false }
    return bytes.count <= head || memcmp(base, base + head, bytes.count - head) == 0
}
