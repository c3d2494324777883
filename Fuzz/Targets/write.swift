// Fuzz target `write`: a fixed, seeded workload of guest writes on a fuzzed
// image opened writable (alone: no backing file is followed). The input is
//
//   bytes 0-1   the workload's seed, big-endian
//   then        the image file
//
// Before the image is opened, the metadata areas are recorded as the codec's
// decoders see them (MetadataRanges: header cluster, active L1 and L2 tables,
// refcount table and blocks, snapshot table and L1 tables, bitmap directory),
// and the checker says whether the image is consistent. The workload writes
// recognisable guest data (GuestPattern), zeroes, discards, compressed
// clusters and flushes within the first few MiB of the disk; errors are fine.
// What must hold afterwards, unless the image was refused or marked corrupt:
// no area that was metadata before and still is after holds guest data it
// did not hold before (areas the write path freed, like a refcount table it
// replaced, may be reused). For an image the checker found consistent
// (leaks allowed), more: it is not marked corrupt, its header still
// validates, it checks consistent again, and every byte the model knows
// (written, or zeroed, by a request that succeeded) reads back, both from
// the open image and after closing and opening it again.
//
// With QCOWKIT_FUZZ_TRACE set, the workload is printed as qemu-io commands
// (the data aside) with the errors, to replay an input with qemu-io.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FuzzSupport
@testable import Qcow2

/// The part of the disk the workload touches, and its requests.
private let window: UInt64 = 2 << 20
private let operationCount = 24
/// Bytes of metadata areas scanned for guest data, at most.
private let scanBudget: UInt64 = 32 << 20

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWrite(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let seed = input.bigEndian(2)
    let original = input.rest()

    let scratch = ScratchFiles.shared
    let path = scratch.write("image.qcow2", original)
    guard let before = metadata(path) else { return 0 }
    let consistent = checkResult(path).map { $0.corruptions == 0 && $0.checkErrors == 0 } ?? false

    guard let image = try? Qcow2Image.open(path: path, writable: true) else { return 0 }
    var model = GuestModel(size: Int(min(image.size, window)))
    var generator = SeededGenerator(seed: seed)
    for generation in 0..<operationCount {
        model.step(image, generation: UInt8(generation), using: &generator)
    }
    if consistent { model.verify(image, "the open image") }
    try? image.close()

    guard let file = try? BlockFile(path: path, writable: false) else { return 0 }
    defer { try? file.close() }
    let corrupt = isMarkedCorrupt(file)
    fuzzRequire(!(consistent && corrupt), "a consistent image was marked corrupt by the workload")
    guard !corrupt else { return 0 }
    let after = MetadataRanges(file: file)
    if after == nil && tracing { fputs("\n# reopening: \(String(describing: Result { try Qcow2Image.open(path: path) }))\n", stderr) }
    // A hostile image can make the write path (QEMU's as well) grow the
    // refcount table past what a header may name: only a consistent one
    // must open again.
    fuzzRequire(after != nil || !consistent, "the header no longer validates after the workload")
    if let after { checkNoGuestData(file, original: original, before: before, after: after) }

    if consistent {
        if let result = checkResult(path) {
            fuzzRequire(result.corruptions == 0 && result.checkErrors == 0,
                        "a consistent image is inconsistent after the workload: \(result)")
        }
        if let reopened = try? Qcow2Image.open(path: path, writable: false) {
            model.verify(reopened, "the image opened again")
            try? reopened.close()
        } else {
            fuzzRequire(false, "a consistent image does not open again after the workload")
        }
    }
    return 0
}

private func metadata(_ path: String) -> MetadataRanges? {
    guard let file = try? BlockFile(path: path, writable: false) else { return nil }
    defer { try? file.close() }
    return MetadataRanges(file: file)
}

/// The checker's verdict on the image at `path` (read-only); nil when it
/// cannot open or check it.
private func checkResult(_ path: String) -> CheckResult? {
    guard let checker = try? Qcow2Checker.open(path: path, writable: false) else { return nil }
    defer { try? checker.close() }
    return try? checker.check(diagnostics: { _ in })
}

private func isMarkedCorrupt(_ file: BlockFile) -> Bool {
    guard let prefix = try? file.readExactly(min(Int((try? file.size()) ?? 0), 4096), at: 0, step: "header"),
          let header = try? Qcow2Header.decode(prefix) else { return false }
    return header.isCorrupt
}

/// Scans what was metadata before the workload and still is after for
/// pattern groups that were not there before.
private func checkNoGuestData(_ file: BlockFile, original: [UInt8], before: MetadataRanges, after: MetadataRanges) {
    guard let fileSize = try? file.size() else { return }
    let ranges = intersect(before.merged(upTo: fileSize), after.merged(upTo: fileSize))
    var budget = scanBudget
    for range in ranges {
        var start = range.lowerBound & ~7
        while start < range.upperBound && budget > 0 {
            let length = min(range.upperBound - start, 1 << 20, budget)
            budget -= length
            var chunk = [UInt8](repeating: 0, count: Int((length + 7) & ~7))
            guard (try? chunk.withUnsafeMutableBytes { try file.read(into: $0, at: start) }) != nil else { return }
            chunk.withUnsafeBytes { raw in
                var position = 0
                while position + 8 <= raw.count {
                    let host = start + UInt64(position)
                    if GuestPattern.isGroup(raw, at: position, host: host, clusterSize: before.clusterSize),
                       !sameAsOriginal(raw, position, original, host) {
                        let area = before.area(containing: host)?.name ?? "?"
                        fuzzRequire(false, "guest data at host offset \(host), in the \(area) at "
                                    + "\(before.area(containing: host)?.range ?? 0..<0)")
                    }
                    position += 8
                }
            }
            start += length
        }
    }
}

private func sameAsOriginal(_ raw: UnsafeRawBufferPointer, _ position: Int, _ original: [UInt8], _ host: UInt64) -> Bool {
    guard host <= UInt64(original.count), original.count - Int(host) >= 8 else { return false }
    for i in 0..<8 where raw[position + i] != original[Int(host) + i] { return false }
    return true
}

private func intersect(_ a: [Range<UInt64>], _ b: [Range<UInt64>]) -> [Range<UInt64>] {
    var result: [Range<UInt64>] = []
    var i = 0, j = 0
    while i < a.count && j < b.count {
        let lower = max(a[i].lowerBound, b[j].lowerBound)
        let upper = min(a[i].upperBound, b[j].upperBound)
        if lower < upper { result.append(lower..<upper) }
        if a[i].upperBound < b[j].upperBound { i += 1 } else { j += 1 }
    }
    return result
}

private let tracing = getenv("QCOWKIT_FUZZ_TRACE") != nil
private func trace(_ command: @autoclosure () -> String) {
    if tracing { fputs("-c '\(command())' ", stderr) }
}

/// Runs one request; false when it failed (traced with its error).
private func attempt(_ request: () throws -> Void) -> Bool {
    do {
        try request()
        return true
    } catch {
        if tracing { fputs("\n# \(error)\n", stderr) }
        return false
    }
}

/// What the guest disk holds where the workload knows it.
private struct GuestModel {
    var expected: [UInt8]
    var known = RangeSet<Int>()

    init(size: Int) { expected = [UInt8](repeating: 0, count: size) }

    /// One request of the workload: mostly pattern writes, some zero
    /// writes, discards, compressed writes and flushes.
    mutating func step(_ image: Qcow2Image, generation: UInt8, using generator: inout SeededGenerator) {
        let size = expected.count
        guard size > 0 else { return }
        let clusterSize = Int(image.header.clusterSize)
        var offset = Int.random(in: 0..<size, using: &generator)
        switch Int.random(in: 0..<8, using: &generator) {
        case 0: offset &= ~511
        case 1: offset &= ~(clusterSize - 1)
        default: break
        }
        let lengths = [Int.random(in: 1...16, using: &generator), 512, 4096 + 8, clusterSize, clusterSize * 3 / 2,
                       Int.random(in: 1...(64 << 10), using: &generator)]
        let length = min(lengths[Int.random(in: 0..<lengths.count, using: &generator)], size - offset)
        let range = offset..<(offset + length)

        switch Int.random(in: 0..<100, using: &generator) {
        case 0..<70:
            trace("write -P \(generation) \(offset) \(length)")
            let bytes = GuestPattern.bytes(at: UInt64(offset), count: length, generation: generation)
            if attempt({ try bytes.withUnsafeBytes { try image.write($0, at: UInt64(offset)) } }) {
                learn(range, bytes)
            } else {
                known.remove(contentsOf: range)
            }
        case 70..<80:
            let unmap = Bool.random(using: &generator)
            trace("write -z\(unmap ? " -u" : "") \(offset) \(length)")
            if attempt({ try image.writeZeroes(at: UInt64(offset), length: UInt64(length), mayUnmap: unmap) }) {
                learn(range, [UInt8](repeating: 0, count: length))
            } else {
                known.remove(contentsOf: range)
            }
        case 80..<88:
            // What a discarded range reads as depends on the version and the backing.
            trace("discard \(offset) \(length)")
            _ = attempt { try image.discard(at: UInt64(offset), length: UInt64(length)) }
            known.remove(contentsOf: range)
        case 88..<94:
            let start = offset & ~(clusterSize - 1)
            let count = min(clusterSize, size - start)
            trace("write -c -P \(generation) \(start) \(count)")
            let bytes = GuestPattern.bytes(at: UInt64(start), count: count, generation: generation)
            if attempt({ try bytes.withUnsafeBytes { try image.writeCompressed($0, at: UInt64(start)) } }) {
                learn(start..<(start + count), bytes)
            } else {
                known.remove(contentsOf: start..<(start + count))
            }
        default:
            trace("flush")
            _ = attempt { try image.flush() }
        }
    }

    private mutating func learn(_ range: Range<Int>, _ bytes: [UInt8]) {
        expected.replaceSubrange(range, with: bytes)
        known.insert(contentsOf: range)
    }

    /// Every known byte reads back as the model has it.
    func verify(_ image: BlockImage, _ what: String) {
        for range in known.ranges {
            var bytes = [UInt8](repeating: 0, count: range.count)
            let ok = bytes.withUnsafeMutableBytes { (try? image.read(into: $0, at: UInt64(range.lowerBound))) != nil }
            fuzzRequire(ok, "\(what): reading \(range) failed")
            fuzzRequire(Bytes.equal(bytes[...], expected[range]), "\(what): \(range) does not read back as written")
        }
    }
}
