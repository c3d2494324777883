// Differential testing of the write path: the same operations applied by
// qemu-io (one process, one -c per operation, as one open image) to one copy
// of an image and by the library (one open image) to another, then the files
// compared byte for byte and checked with qemu-img check.
import Foundation
import Testing
@testable import Qcow2
import TestSupport

/// One guest operation, in qemu-io's terms.
enum WriteOp: CustomStringConvertible, Sendable {
    /// `write -P pattern off len`
    case write(UInt64, UInt64, pattern: UInt8)
    /// `write -s <random file> off len`: incompressible data.
    case writeRandom(UInt64, UInt64)
    /// `write -z [-u] off len`
    case zeroes(UInt64, UInt64, unmap: Bool)
    /// `discard off len`
    case discard(UInt64, UInt64)
    /// `write -c -P pattern off len` (whole clusters)
    case compressed(UInt64, UInt64, pattern: UInt8)
    /// `write -c -s <random file> off len`: falls back to a normal write.
    case compressedRandom(UInt64, UInt64)

    var description: String { qemuIOCommand(randomFile: "R") }

    var isCompressed: Bool {
        switch self {
        case .compressed, .compressedRandom: return true
        default: return false
        }
    }

    func qemuIOCommand(randomFile: String) -> String {
        switch self {
        case let .write(o, l, p): return "write -q -P \(p) \(o) \(l)"
        case let .writeRandom(o, l): return "write -q -s \(randomFile) \(o) \(l)"
        case let .zeroes(o, l, unmap): return "write -q -z\(unmap ? " -u" : "") \(o) \(l)"
        case let .discard(o, l): return "discard -q \(o) \(l)"
        case let .compressed(o, l, p): return "write -q -c -P \(p) \(o) \(l)"
        case let .compressedRandom(o, l): return "write -q -c -s \(randomFile) \(o) \(l)"
        }
    }
}

/// Runs a tool with its output going to files (not pipes): many tests run
/// processes at once, and reading pipes from Foundation can then fail with
/// EINTR.
enum WriteProcess {
    struct Failed: Error, CustomStringConvertible {
        var command: [String]
        var status: Int32
        var output: String
        var description: String { "\(command.joined(separator: " ")) exited \(status): \(output)" }
    }

    @discardableResult
    static func run(_ arguments: [String], in directory: URL? = nil, check: Bool = true) throws -> (status: Int32, output: String) {
        let outputURL = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("qcowkit-write-out-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: outputURL) }
        let handle = try FileHandle(forWritingTo: outputURL)
        let process = Process()
        let (executable, resolved) = try TestTools.resolve(arguments)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = resolved
        if let directory { process.currentDirectoryURL = directory }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try? handle.close()
        let output = String(decoding: (try? Data(contentsOf: outputURL)) ?? Data(), as: UTF8.self)
        if check && process.terminationStatus != 0 {
            throw Failed(command: arguments, status: process.terminationStatus, output: output)
        }
        return (process.terminationStatus, output)
    }
}

enum WriteOracle {
    /// Random bytes qemu-io repeats to fill `-s` buffers (as the library does).
    static func randomBytes(count: Int, seed: UInt64) -> [UInt8] {
        var generator = WriteRandom(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    }

    /// qemu-io's buffer for `-s file`: the file's first bytes, repeated.
    static func buffer(_ op: WriteOp, random: [UInt8]) -> [UInt8] {
        func repeated(_ length: UInt64) -> [UInt8] {
            (0..<Int(length)).map { random[$0 % random.count] }
        }
        switch op {
        case let .write(_, l, p), let .compressed(_, l, p): return [UInt8](repeating: p, count: Int(l))
        case let .writeRandom(_, l), let .compressedRandom(_, l): return repeated(l)
        case .zeroes, .discard: return []
        }
    }

    /// Applies `ops` with one qemu-io process; returns its combined output.
    @discardableResult
    static func applyWithQemuIO(_ image: String, _ ops: [WriteOp], randomFile: String, format: String = "qcow2") throws -> String {
        var arguments = ["qemu-io", "-f", format]
        for op in ops { arguments += ["-c", op.qemuIOCommand(randomFile: randomFile)] }
        arguments.append(image)
        // qemu-io exits 1 when an operation fails; the caller compares.
        return try WriteProcess.run(arguments, check: false).output
    }

    /// What the library did differently from QEMU on purpose during the last
    /// `applyWithLibrary` (see ByteAllocation.swift).
    struct Departures {
        var repackingAvoided = 0
        /// The operation during which the first departure happened.
        var firstOperation: Int?
    }

    /// Applies `ops` through the library on one open image (its backing
    /// chain attached); returns the errors operations threw, by index.
    @discardableResult
    static func applyWithLibrary(_ image: String, _ ops: [WriteOp], random: [UInt8]) throws -> [Int: Error] {
        try applyWithLibrary(image, ops, random: random, departures: nil)
    }

    @discardableResult
    static func applyWithLibrary(_ image: String, _ ops: [WriteOp], random: [UInt8],
                                 departures: UnsafeMutablePointer<Departures>?) throws -> [Int: Error] {
        let opened = try ImageOpener.open(path: image, format: .qcow2, writable: true)
        guard let qcow2 = opened as? Qcow2Image else { throw Qcow2Error.notQcow2 }
        var errors: [Int: Error] = [:]
        for (i, op) in ops.enumerated() {
            do {
                try apply(op, to: qcow2, random: random)
            } catch {
                errors[i] = error
            }
            let avoided = (try? qcow2.withWriter { writer, _ in writer.allocator.reallocatedClusterRepackingAvoided }) ?? 0
            if avoided > 0 && departures?.pointee.firstOperation == nil { departures?.pointee.firstOperation = i }
        }
        departures?.pointee.repackingAvoided = (try? qcow2.withWriter { writer, _ in writer.allocator.reallocatedClusterRepackingAvoided }) ?? 0
        try qcow2.close()
        return errors
    }

    static func apply(_ op: WriteOp, to image: Qcow2Image, random: [UInt8]) throws {
        let bytes = buffer(op, random: random)
        switch op {
        case let .write(o, _, _), let .writeRandom(o, _):
            try bytes.withUnsafeBytes { try image.write($0, at: o) }
        case let .zeroes(o, l, unmap):
            try image.writeZeroes(at: o, length: l, mayUnmap: unmap)
        case let .discard(o, l):
            try image.discard(at: o, length: l)
        case let .compressed(o, _, _), let .compressedRandom(o, _):
            try bytes.withUnsafeBytes { try image.writeCompressed($0, at: o) }
        }
    }

    /// Where two files first differ (nil: identical, lengths included).
    static func firstDifference(_ a: String, _ b: String) throws -> String? {
        // cmp is fast; the details are worked out only when the files differ.
        if try WriteProcess.run(["cmp", "-s", a, b], check: false).status == 0 { return nil }
        let x = [UInt8](try Data(contentsOf: URL(fileURLWithPath: a)))
        let y = [UInt8](try Data(contentsOf: URL(fileURLWithPath: b)))
        if x == y { return nil }
        let n = min(x.count, y.count)
        var i = 0
        while i < n && x[i] == y[i] { i += 1 }
        if i == n { return "lengths differ: \(x.count) (qemu-io) vs \(y.count) (library)" }
        return "first difference at byte \(i) (0x\(String(i, radix: 16))) of \(x.count) (qemu-io) / \(y.count) (library)"
    }

    /// `qemu-img check` exit status and output (0: clean, no leaks).
    static func check(_ image: String) throws -> (status: Int32, output: String) {
        try WriteProcess.run(["qemu-img", "check", image], check: false)
    }

    /// `qemu-img compare` exit status (0: same guest contents).
    static func compare(_ a: String, _ b: String) throws -> Int32 {
        try WriteProcess.run(["qemu-img", "compare", "-q", a, b], check: false).status
    }
}

/// The guest contents an image should have after a sequence of operations,
/// with QEMU's rules for what is discarded and what fails.
struct WriteGuestModel {
    var bytes: [UInt8]
    let clusterSize: UInt64
    /// Version 2 images with a backing file ignore discards.
    let ignoresDiscards: Bool

    init(initial: [UInt8], clusterSize: UInt64, version: UInt32, hasBacking: Bool) {
        bytes = initial
        self.clusterSize = clusterSize
        ignoresDiscards = version < 3 && hasBacking
    }

    var size: UInt64 { UInt64(bytes.count) }

    mutating func fill(_ offset: UInt64, _ data: [UInt8]) {
        bytes.replaceSubrange(Int(offset)..<(Int(offset) + data.count), with: data)
    }

    mutating func zero(_ offset: UInt64, _ length: UInt64) {
        fill(offset, [UInt8](repeating: 0, count: Int(length)))
    }

    /// `failed`: the operation threw (a compressed write into an allocated cluster).
    mutating func apply(_ op: WriteOp, buffer: [UInt8], failed: Bool) {
        guard !failed else { return }
        switch op {
        case let .write(o, _, _), let .writeRandom(o, _), let .compressed(o, _, _), let .compressedRandom(o, _):
            fill(o, buffer)
        case let .zeroes(o, l, _):
            zero(o, l)
        case let .discard(o, l):
            guard !ignoresDiscards else { return }
            let cs = clusterSize
            let end = o + l
            let start = (o + cs - 1) / cs * cs
            let wholeEnd = end / cs * cs
            if wholeEnd > start { zero(start, wholeEnd - start) }
            // The image's last, partial cluster is discarded when covered from its start.
            if end == size && end % cs != 0 && wholeEnd >= o && wholeEnd % cs == 0 { zero(wholeEnd, end - wholeEnd) }
        }
    }
}

/// A small deterministic generator (SplitMix64) for seeded scenarios.
struct WriteRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A scratch directory for write tests, removed afterwards.
final class WriteScratch {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("qcowkit-write-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Copies `source` to `name` (same bytes, same holes do not matter).
    func copy(_ source: String, to name: String) throws -> String {
        let target = file(name)
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.copyItem(atPath: source, toPath: target)
        return target
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}
