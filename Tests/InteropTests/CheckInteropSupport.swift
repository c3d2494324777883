// What the check interop tests share: running qemu-img / qemu-io and the
// built qcowkit, a scratch directory, a small editor that damages qcow2
// metadata on purpose, and the comparison of both tools on copies of one
// image (output, exit status and, after repairs, the bytes).
import Foundation
import Qcow2
import Testing
import TestSupport

struct CheckRun: Equatable {
    var status: Int32
    var output: String
    var errorOutput: String
}

enum CheckProcess {
    /// Runs a program (looked up in PATH unless it is a path) in `directory`
    /// (QemuOracle.run, its output as text).
    @discardableResult
    static func run(_ arguments: [String], in directory: URL, check: Bool = true) throws -> CheckRun {
        let result = try QemuOracle.run(arguments, in: directory, check: check)
        return CheckRun(status: result.status, output: result.output, errorOutput: result.errorOutput)
    }

    static func qcowkit(_ arguments: [String], in directory: URL) throws -> CheckRun {
        let path = try TestTools.qcowkit()
        return try run([path] + arguments, in: directory, check: false)
    }

    static func qemuImg(_ arguments: [String], in directory: URL) throws -> CheckRun {
        try run(["qemu-img"] + arguments, in: directory, check: false)
    }
}

/// A fresh directory under /tmp, removed with the value.
final class CheckScratch: @unchecked Sendable {
    let url: URL
    init() throws {
        url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("qcowkit-check-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: url) }

    /// `qemu-img <arguments>`, which must succeed.
    func img(_ arguments: String...) throws {
        try CheckProcess.run(["qemu-img"] + arguments, in: url)
    }

    /// qemu-io commands on a qcow2 image, which must all succeed.
    func io(_ image: String, _ commands: [String]) throws {
        try QemuOracle.qemuIO(image, commands, in: url)
    }

    func copy(_ from: String, to: String) throws {
        try? FileManager.default.removeItem(atPath: path(to))
        try FileManager.default.copyItem(atPath: path(from), toPath: path(to))
    }

    func bytes(_ name: String) throws -> Data { try Data(contentsOf: url.appendingPathComponent(name)) }
}

/// Reads and pokes a qcow2 image's metadata (big-endian fields), for
/// damaging images the way the tests need.
final class CheckImageEditor {
    let handle: FileHandle
    let clusterBits: Int
    let l1Offset: UInt64
    let refcountTableOffset: UInt64
    let refcountOrder: Int
    let snapshotCount: Int
    let snapshotsOffset: UInt64
    let l2EntrySize: UInt64

    init(_ path: String) throws {
        handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        let header = try Self.read(handle, 0, 112)
        func u32(_ o: Int) -> UInt32 { header[o..<o + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        func u64(_ o: Int) -> UInt64 { header[o..<o + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        clusterBits = Int(u32(20))
        l1Offset = u64(40)
        refcountTableOffset = u64(48)
        snapshotCount = Int(u32(60))
        snapshotsOffset = u64(64)
        let version = u32(4)
        refcountOrder = version >= 3 ? Int(u32(96)) : 4
        l2EntrySize = version >= 3 && u64(72) & 16 != 0 ? 16 : 8
    }
    deinit { try? handle.close() }

    var clusterSize: UInt64 { 1 << UInt64(clusterBits) }

    private static func read(_ handle: FileHandle, _ offset: UInt64, _ count: Int) throws -> [UInt8] {
        try handle.seek(toOffset: offset)
        var bytes = [UInt8](try handle.read(upToCount: count) ?? Data())
        bytes += [UInt8](repeating: 0, count: count - bytes.count)
        return bytes
    }
    func read(_ offset: UInt64, _ count: Int) throws -> [UInt8] { try Self.read(handle, offset, count) }
    func write(_ offset: UInt64, _ bytes: [UInt8]) throws {
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data(bytes))
    }
    func u64(_ offset: UInt64) throws -> UInt64 { try read(offset, 8).reduce(0) { $0 << 8 | UInt64($1) } }
    func setU64(_ offset: UInt64, _ value: UInt64) throws {
        try write(offset, (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) })
    }
    func setU32(_ offset: UInt64, _ value: UInt32) throws {
        try write(offset, (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) })
    }

    static let offsetMask: UInt64 = 0x00ff_ffff_ffff_fe00

    func l1(_ index: Int) throws -> UInt64 { try u64(l1Offset + 8 * UInt64(index)) }
    func setL1(_ index: Int, _ value: UInt64) throws { try setU64(l1Offset + 8 * UInt64(index), value) }
    func l2Offset(_ l1Index: Int) throws -> UInt64 { try l1(l1Index) & Self.offsetMask }
    func l2(_ l1Index: Int, _ index: Int) throws -> UInt64 {
        try u64(l2Offset(l1Index) + l2EntrySize * UInt64(index))
    }
    func setL2(_ l1Index: Int, _ index: Int, _ value: UInt64) throws {
        try setU64(l2Offset(l1Index) + l2EntrySize * UInt64(index), value)
    }
    func setL2Bitmap(_ l1Index: Int, _ index: Int, _ value: UInt64) throws {
        try setU64(l2Offset(l1Index) + l2EntrySize * UInt64(index) + 8, value)
    }

    /// Where cluster `cluster`'s refcount lives: block offset and index.
    private func refcountSlot(_ cluster: UInt64) throws -> (block: UInt64, index: UInt64) {
        let perBlock = (clusterSize * 8) >> UInt64(refcountOrder)
        let block = try u64(refcountTableOffset + 8 * (cluster / perBlock)) & ~0x1ff
        return (block, cluster % perBlock)
    }

    func setRefcount(_ cluster: UInt64, _ value: UInt64) throws {
        let (block, index) = try refcountSlot(cluster)
        precondition(block != 0, "no refcount block for cluster \(cluster)")
        let bits = 1 << refcountOrder
        if bits >= 8 {
            let bytes = bits / 8
            try write(block + index * UInt64(bytes), (0..<bytes).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * (bytes - 1 - $0))) })
        } else {
            let perByte = UInt64(8 / bits)
            let offset = block + index / perByte
            let shift = UInt8(bits * Int(index % perByte))
            let mask = UInt8((1 << bits) - 1) << shift
            let old = try read(offset, 1)[0]
            try write(offset, [(old & ~mask) | (UInt8(truncatingIfNeeded: value) << shift & mask)])
        }
    }

    /// Byte offsets of the snapshot table entries.
    func snapshotEntryOffsets() throws -> [UInt64] {
        var offsets: [UInt64] = []
        var offset = snapshotsOffset
        for _ in 0..<snapshotCount {
            offset = (offset + 7) & ~7
            offsets.append(offset)
            let fixed = try read(offset, 40)
            let idSize = UInt64(fixed[12]) << 8 | UInt64(fixed[13])
            let nameSize = UInt64(fixed[14]) << 8 | UInt64(fixed[15])
            let extra = fixed[36..<40].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            offset += 40 + extra + idSize + nameSize
        }
        return offsets
    }
}

/// Both tools on copies of one image: their outputs and exit statuses, and
/// the repaired files (bytes, and where they hold data).
struct CheckComparison {
    var qemu: CheckRun
    var ours: CheckRun
    var qemuBytes: Data
    var ourBytes: Data
    var qemuExtents: [Range<UInt64>]
    var ourExtents: [Range<UInt64>]

    /// qemu-img's output as qcowkit prints it: its own program name.
    static func renamed(_ text: String) -> String {
        text.replacingOccurrences(of: "qemu-img", with: "qcowkit").replacingOccurrences(of: "q.img", with: "k.img")
    }

    static func run(_ image: String, in dir: CheckScratch, arguments: [String]) throws -> CheckComparison {
        try dir.copy(image, to: "q.img")
        try dir.copy(image, to: "k.img")
        let qemu = try CheckProcess.qemuImg(["check"] + arguments + ["q.img"], in: dir.url)
        let ours = try CheckProcess.qcowkit(["check"] + arguments + ["k.img"], in: dir.url)
        return CheckComparison(
            qemu: CheckRun(status: qemu.status, output: renamed(qemu.output), errorOutput: renamed(qemu.errorOutput)),
            ours: ours, qemuBytes: try dir.bytes("q.img"), ourBytes: try dir.bytes("k.img"),
            qemuExtents: try dataExtents(dir.path("q.img")), ourExtents: try dataExtents(dir.path("k.img")))
    }

    /// Where the file holds data (SEEK_DATA / SEEK_HOLE): what `du` counts,
    /// and where a repair punched holes into clusters it freed.
    static func dataExtents(_ path: String) throws -> [Range<UInt64>] {
        let file = try BlockFile(path: path, writable: false)
        defer { try? file.close() }
        let size = try file.size()
        var extents: [Range<UInt64>] = []
        var offset: UInt64 = 0
        while offset < size, let start = file.nextData(from: offset), start < size {
            let end = max(start + 1, file.nextHole(from: start) ?? size)
            extents.append(start..<end)
            offset = end
        }
        return extents
    }

    /// Expects everything identical.
    func expectIdentical(_ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(ours.status == qemu.status, "\(label): exit status", sourceLocation: sourceLocation)
        #expect(ours.output == qemu.output, "\(label): standard output", sourceLocation: sourceLocation)
        #expect(ours.errorOutput == qemu.errorOutput, "\(label): standard error", sourceLocation: sourceLocation)
        #expect(ourBytes == qemuBytes, "\(label): image bytes after the check", sourceLocation: sourceLocation)
        #expect(ourExtents == qemuExtents, "\(label): data extents (holes punched) after the check",
                sourceLocation: sourceLocation)
    }
}
