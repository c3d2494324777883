// Writing a whole guest disk (through its backing chain) into a sparse raw
// file, as `qemu-img convert -O raw` does: the file gets exactly the virtual
// size, ranges the chain reports as zero are never read or written, and
// blocks of read data that turn out to be all zeroes stay holes too.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Writes a guest disk to a sparse raw file (`qemu-img convert -O raw`).
public enum RawExport {
    /// Bytes read per request: large sequential reads, one buffer reused.
    package static let chunkSize = 2 << 20
    /// Zero runs at least this long (and aligned to it) are left as holes:
    /// qemu-img convert's default minimum sparse size (-S 4k).
    package static let sparseBlock = 4096

    /// Builds the codec's `Qcow2Error.export` failures.
    package enum Failure {
        static func create(path: String, errno: Int32) -> Qcow2Error { .export(.create(path: path, errno: errno)) }
        static func outputIsSource(path: String) -> Qcow2Error { .export(.outputIsSource(path: path)) }
        static func read(offset: UInt64, error: Error) -> Qcow2Error { .export(.read(offset: offset, reason: "\(error)")) }
        static func write(offset: UInt64, error: Error) -> Qcow2Error { .export(.write(offset: offset, reason: "\(error)")) }
    }

    /// Writes `image`'s guest data to a new (or truncated) raw file at `path`.
    /// Throws `Qcow2Error.export` (creating, reading, writing) in qemu-img
    /// convert's words.
    public static func write(_ image: BlockImage, to path: String) throws {
        try refuseOutputInChain(image, path: path)
        let output: BlockFile
        do {
            output = try BlockFile.create(path: path)
        } catch let Qcow2Error.io(_, code) {
            throw Failure.create(path: path, errno: code)
        }
        // Created; from now on locked as qemu-img convert's raw target
        // (which shares everything, as a raw node passes its user's sharing).
        defer { try? output.close() }
        try output.setAccess(BlockAccess.backend(writable: true).forFile(of: .raw, writable: true))
        let size = image.size
        do {
            try output.truncate(to: size)
            // QEMU allocates the first block of every raw file it creates (so
            // that O_DIRECT alignment can be probed later); do the same, so
            // that the result's disk usage matches too.
            let first = [UInt8](repeating: 0, count: Int(min(size, UInt64(sparseBlock))))
            try output.write(first, at: 0)
        } catch { throw Failure.write(offset: 0, error: error) }

        // Segments of one chunk each are handed out in order to a few
        // workers (reads are thread-safe), so that decompression and I/O of
        // neighbouring segments overlap, as qemu-img's parallel requests do.
        let segments = Int(divideRoundingUp(size, UInt64(chunkSize)))
        let workers = min(segments, workerCount)
        let nextSegment = Atomic<Int>(0)
        let firstFailure = Mutex<(segment: Int, failure: Qcow2Error)?>(nil)
        DispatchQueue.concurrentPerform(iterations: max(workers, 1)) { _ in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
            defer { buffer.deallocate() }
            while true {
                let segment = nextSegment.wrappingAdd(1, ordering: .relaxed).oldValue
                guard segment < segments, firstFailure.withLock({ $0 == nil }) else { return }
                let start = UInt64(segment) * UInt64(chunkSize)
                do {
                    try copySegment(image, from: start, to: min(size, start + UInt64(chunkSize)), buffer: buffer, output: output)
                } catch {
                    var failure = Failure.read(offset: start, error: error)
                    if let error = error as? Qcow2Error, case .export = error { failure = error }
                    firstFailure.withLock { first in
                        if segment < first?.segment ?? Int.max { first = (segment, failure) }
                    }
                    return
                }
            }
        }
        if let failure = firstFailure.withLock({ $0?.failure }) { throw failure }
    }

    /// Refuses an output path that names a file of the source's chain:
    /// creating the output would truncate it before it is read.
    static func refuseOutputInChain(_ image: BlockImage, path: String) throws {
        guard let existing = try? BlockFile(path: path, writable: false) else { return }
        let target = try? existing.identity()
        try? existing.close()
        if let target, image.chain.contains(where: { (try? $0.hostFileIdentity()) == target }) {
            throw Failure.outputIsSource(path: path)
        }
    }

    /// Worker threads: one per core, at most four.
    static var workerCount: Int {
        max(1, min(4, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    }

    /// Copies the guest range [start, end) (at most one chunk) to `output`.
    private static func copySegment(_ image: BlockImage, from start: UInt64, to end: UInt64,
                                    buffer: UnsafeMutableRawBufferPointer, output: BlockFile) throws {
        var offset = start
        while offset < end {
            let status: ChainBlockStatus
            do { status = try image.chainBlockStatus(at: offset, length: end - offset) } catch {
                throw Failure.read(offset: offset, error: error)
            }
            let runEnd = offset + status.status.length
            // Zero ranges (including preallocated holes) are already holes.
            if !status.status.isZero {
                let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(runEnd - offset)])
                do { try image.read(into: chunk, at: offset) } catch {
                    throw Failure.read(offset: offset, error: error)
                }
                try writeNonZero(chunk, at: offset, to: output)
            }
            offset = runEnd
        }
    }

    /// Writes the parts of `chunk` that are not whole zero blocks (blocks
    /// aligned to `sparseBlock` in the output), one write per run.
    static func writeNonZero(_ chunk: UnsafeMutableRawBufferPointer, at offset: UInt64, to output: BlockFile) throws {
        try forEachNonZeroRun(UnsafeRawBufferPointer(chunk), at: offset, blockSize: sparseBlock) { run, position in
            do { try output.write(run, at: position) } catch {
                throw Failure.write(offset: position, error: error)
            }
        }
    }
}

/// Calls `body` for each run of `chunk` (guest data at `offset`) that is not
/// made of whole zero blocks, blocks being aligned to `blockSize` in guest
/// offsets: qemu-img convert's minimum sparse size (-S). Partial blocks at
/// the edges of the chunk count as data.
func forEachNonZeroRun(
    _ chunk: UnsafeRawBufferPointer, at offset: UInt64, blockSize: Int,
    _ body: (UnsafeRawBufferPointer, UInt64) throws -> Void
) rethrows {
    var index = 0
    var runStart: Int?
    while index < chunk.count {
        let toBoundary = blockSize - Int((offset + UInt64(index)) % UInt64(blockSize))
        let blockEnd = min(chunk.count, index + toBoundary)
        let block = UnsafeRawBufferPointer(rebasing: chunk[index..<blockEnd])
        let skip = block.count == blockSize && isAllZero(block)
        if skip, let start = runStart {
            try body(UnsafeRawBufferPointer(rebasing: chunk[start..<index]), offset + UInt64(start))
            runStart = nil
        } else if !skip && runStart == nil {
            runStart = index
        }
        index = blockEnd
    }
    if let start = runStart {
        try body(UnsafeRawBufferPointer(rebasing: chunk[start...]), offset + UInt64(start))
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

extension Qcow2Error {
    /// Why `RawExport` or `Qcow2Export` could not write its output, in
    /// qemu-img convert's words. Carried by `Qcow2Error.export`.
    public enum Export: Equatable, Sendable, CustomStringConvertible {
        /// The output file could not be created.
        case create(path: String, errno: Int32)
        /// The output path names a file of the source's own chain, which
        /// creating the output would truncate before it is read.
        case outputIsSource(path: String)
        /// Reading the source failed at guest offset `offset`; `reason` is the error's message.
        case read(offset: UInt64, reason: String)
        /// Writing the output failed at `offset`; `reason` is the error's message.
        case write(offset: UInt64, reason: String)

        /// The message qemu-img convert prints.
        public var description: String {
            switch self {
            case let .create(path, code): return "Could not create '\(path)': \(String(cString: strerror(code)))"
            case let .outputIsSource(path): return "Could not create '\(path)': it is an image of the source's backing chain"
            case let .read(offset, reason): return "error while reading at byte \(offset): \(reason)"
            case let .write(offset, reason): return "error while writing at byte \(offset): \(reason)"
            }
        }
    }
}
