// `qcowkit convert -c` compresses clusters on several workers at once and
// writes them in guest order: its target must be byte-identical to
// `qemu-img convert -c`'s default (in-order) output for both compression
// types and cluster sizes from 512 bytes to 2 MiB, on inputs mixing random
// data, text, written zeroes and holes, an odd length, and a backing chain.
// With -W (out of order) the target must hold the same guest data.
import Foundation
import Testing

struct CompressedConvertCase: CustomStringConvertible, Sendable {
    var clusterSize: String
    var compression: String
    var input: Input
    var extraFlags: [String] = []
    enum Input: String, Sendable { case mixedRaw, chain }
    var description: String { "\(compression), \(clusterSize) clusters, \(input.rawValue) \(extraFlags.joined(separator: " "))" }
}

/// Deterministic bytes that do not compress.
private func noise(_ count: Int, seed: UInt64) -> Data {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        bytes[i] = UInt8(truncatingIfNeeded: state)
    }
    return Data(bytes)
}

/// Text that compresses, different from line to line.
private func text(_ count: Int) -> Data {
    var data = Data()
    var line = 0
    while data.count < count {
        data.append(Data("line \(line): the quick brown fox jumps over \(line * 7919 % 1000) lazy dogs\n".utf8))
        line += 1
    }
    return data.prefix(count)
}

/// A raw file of an odd length (not a whole number of clusters, for any
/// cluster size above 512): random data, text, written zeroes, holes, a
/// cluster half data half zeroes, and data right at the end.
private func mixedRaw(_ dir: ScratchDirectory) throws -> String {
    let path = dir.file("src.raw")
    let size = 7 * 1024 * 1024 + 3 * 512
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.truncate(atOffset: UInt64(size))
    func put(_ data: Data, at offset: Int) throws {
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: data)
    }
    try put(noise(1_536 * 1024, seed: 1), at: 0)
    try put(text(1_536 * 1024), at: 1_536 * 1024)
    try put(Data(count: 1024 * 1024), at: 3 * 1024 * 1024)  // written zeroes
    // 4 MiB..5 MiB: a hole
    try put(text(40 * 1024), at: 5 * 1024 * 1024 + 24 * 1024)
    try put(noise(3 * 1024, seed: 2), at: 6 * 1024 * 1024 - 1024)
    try put(text(1024 + 512), at: size - 1024 - 512)
    return path
}

let compressedConvertCases: [CompressedConvertCase] = [
    .init(clusterSize: "512", compression: "zlib", input: .mixedRaw),
    .init(clusterSize: "4k", compression: "zstd", input: .mixedRaw),
    .init(clusterSize: "64k", compression: "zlib", input: .mixedRaw),
    .init(clusterSize: "64k", compression: "zstd", input: .mixedRaw),
    .init(clusterSize: "2M", compression: "zlib", input: .mixedRaw),
    .init(clusterSize: "2M", compression: "zstd", input: .mixedRaw),
    .init(clusterSize: "4k", compression: "zlib", input: .chain),
    .init(clusterSize: "64k", compression: "zstd", input: .chain),
    .init(clusterSize: "64k", compression: "zlib", input: .mixedRaw, extraFlags: ["-m", "16"]),
    // Fewer requests in flight than compressing threads, and a count that
    // deals out unevenly over them (ConvertCopy.runCompressing).
    .init(clusterSize: "4k", compression: "zlib", input: .mixedRaw, extraFlags: ["-m", "1"]),
    .init(clusterSize: "4k", compression: "zstd", input: .mixedRaw, extraFlags: ["-m", "5"]),
    .init(clusterSize: "8k", compression: "zstd", input: .mixedRaw, extraFlags: ["-S", "0"]),
]

@Suite("convert -c on parallel workers against qemu-img")
struct ConvertCompressedInteropTests {
    @Test("byte-identical to qemu-img convert -c (in order)", arguments: compressedConvertCases)
    func sameBytes(_ c: CompressedConvertCase) throws {
        let dir = try ScratchDirectory()
        let (source, format) = c.input == .chain ? (try qcow2Chain(dir), "qcow2") : (try mixedRaw(dir), "raw")
        let flags = ["-f", format, "-O", "qcow2", "-c", "-o", "cluster_size=\(c.clusterSize),compression_type=\(c.compression)"]
            + c.extraFlags
        let theirs = dir.file("theirs.qcow2"), ours = dir.file("ours.qcow2")
        try QemuOracle.run(["qemu-img", "convert"] + flags + [source, theirs])
        let result = try QemuOracle.qcowkit("convert", in: dir.url, arguments: flags + [source, ours])
        #expect(result.status == 0, "\(result.errorOutput)")
        guard result.status == 0 else { return }
        let same = try QemuOracle.run(["cmp", theirs, ours], check: false)
        #expect(same.status == 0, "not byte-identical to qemu-img's: \(same.output)")
        let check = try QemuOracle.qemuImg("check", ours, check: false)
        #expect(check.status == 0, "qemu-img check: \(check.output)")
    }

    @Test("-W: out-of-order compressed writes hold the same guest data", arguments: ["zlib", "zstd"])
    func outOfOrder(_ compression: String) throws {
        let dir = try ScratchDirectory()
        let source = try mixedRaw(dir)
        let ours = dir.file("ours.qcow2")
        let result = try QemuOracle.qcowkit("convert", in: dir.url, arguments: [
            "-W", "-f", "raw", "-O", "qcow2", "-c", "-o", "cluster_size=4k,compression_type=\(compression)", source, ours])
        #expect(result.status == 0, "\(result.errorOutput)")
        guard result.status == 0 else { return }
        let compare = try QemuOracle.qemuImg("compare", "-f", "raw", "-F", "qcow2", source, ours, check: false)
        #expect(compare.status == 0, "qemu-img compare: \(compare.output)")
        let check = try QemuOracle.qemuImg("check", ours, check: false)
        #expect(check.status == 0, "qemu-img check: \(check.output)")
        // Clusters are stored compressed (qemu-img 7.2's map shows no
        // offset for those), as in-order output stores them.
        let map = try QemuOracle.qemuImg("map", "--output=json", "-f", "qcow2", ours)
        #expect(map.output.contains("\"data\": true}"))
    }
}
