// Differential runs of qemu-img 7.2 and qcowkit invoked as `qemu-img` (a
// symlink of that name to the built binary): the same arguments in the same
// directory, so that file names in messages match; the outcome of each is
// its exit status, standard output and standard error, with the lines that
// hold wall-clock times normalised.
import Foundation
import TestSupport

struct QemuImgDifferential {
    let scratch: ScratchDirectory
    /// qcowkit, linked as bin/qemu-img (and bin/qemu-io) in the scratch directory.
    let ours: String
    let oursIO: String

    init() throws {
        scratch = try ScratchDirectory()
        let bin = scratch.url.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        ours = bin.appendingPathComponent("qemu-img").path
        oursIO = bin.appendingPathComponent("qemu-io").path
        let binary = try TestTools.qcowkit()
        try FileManager.default.createSymbolicLink(atPath: ours, withDestinationPath: binary)
        try FileManager.default.createSymbolicLink(atPath: oursIO, withDestinationPath: binary)
    }

    var directory: URL { scratch.url }
    func file(_ name: String) -> String { scratch.file(name) }

    struct Outcome: Equatable, CustomStringConvertible {
        var status: Int32
        var stdout: String
        var stderr: String
        var description: String { "exit \(status)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
    }

    /// Runs the real tool (`qemu-img` or `qemu-io`) with `arguments`.
    func theirs(_ arguments: [String], tool: String = "qemu-img") throws -> Outcome {
        Self.outcome(try QemuOracle.run([tool] + arguments, in: directory, check: false))
    }

    /// Runs qcowkit as `tool` with `arguments`.
    func mine(_ arguments: [String], tool: String = "qemu-img") throws -> Outcome {
        Self.outcome(try QemuOracle.run([tool == "qemu-io" ? oursIO : ours] + arguments, in: directory, check: false))
    }

    /// Both outcomes, when they differ (nil when equal).
    func difference(_ arguments: [String], tool: String = "qemu-img") throws -> String? {
        let expected = try theirs(arguments, tool: tool)
        let actual = try mine(arguments, tool: tool)
        guard expected != actual else { return nil }
        return "\(tool) \(arguments.joined(separator: " "))\n== qemu: \(expected)\n== qcowkit: \(actual)"
    }

    /// Whether two files hold the same bytes.
    func sameBytes(_ a: String, _ b: String) -> Bool {
        guard let x = FileManager.default.contents(atPath: file(a)),
              let y = FileManager.default.contents(atPath: file(b)) else { return false }
        return x == y
    }

    static func outcome(_ result: ProcessResult) -> Outcome {
        Outcome(status: result.status, stdout: normaliseTimes(result.output), stderr: result.errorOutput)
    }

    /// "Run completed in 0.123 seconds." -> "Run completed in T seconds."
    static func normaliseTimes(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.hasPrefix("Run completed in "), line.hasSuffix(" seconds.") else { return String(line) }
            return "Run completed in T seconds."
        }.joined(separator: "\n")
    }

    /// The chain and images the verbs are compared on, made by qemu-img and
    /// qemu-io: a backing file with data and a compressed cluster, an overlay
    /// with zeroes, a discard and new data, its raw and qcow2 flattenings, an
    /// odd-sized image, extended L2, empty images, a larger overlay over the
    /// shorter base, a v2 image and one with persistent bitmaps.
    func makeFixtures() throws {
        func img(_ arguments: String...) throws { try QemuOracle.run(["qemu-img"] + arguments, in: directory) }
        func io(_ image: String, _ commands: [String]) throws { try QemuOracle.qemuIO(image, commands, in: directory) }
        try img("create", "-q", "-f", "qcow2", "base.qcow2", "4M")
        try io("base.qcow2", ["write -P 1 0 1M", "write -P 2 2M 64k", "write -c -P 3 3M 64k"])
        try img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
        try io("top.qcow2", ["write -z 0 64k", "discard 2M 64k", "write -P 5 1536k 4k"])
        try img("convert", "-O", "raw", "top.qcow2", "top.raw")
        try img("convert", "-O", "qcow2", "top.qcow2", "flat.qcow2")
        try img("convert", "-c", "-O", "qcow2", "top.qcow2", "comp.qcow2")
        try img("create", "-q", "-f", "qcow2", "odd.qcow2", "3000001")
        try io("odd.qcow2", ["write -P 9 2999808 193"])
        try img("convert", "-O", "raw", "odd.qcow2", "odd.raw")
        try img("create", "-q", "-f", "raw", "hole.raw", "3000001")
        try img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "big.qcow2", "8M")
        try io("big.qcow2", ["write -P 7 6M 4k"])
        try img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "bigz.qcow2", "8M")
        try img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "ext.qcow2", "4M")
        try io("ext.qcow2", ["write -P 1 0 1M", "write -P 2 2M 64k", "write -z 0 64k", "write -P 5 1536k 4k"])
        try img("create", "-q", "-f", "raw", "empty.raw", "0")
        try img("create", "-q", "-f", "qcow2", "empty.qcow2", "0")
        try img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "v2.qcow2", "1M")
        try img("create", "-q", "-f", "qcow2", "bm.qcow2", "10M")
        try img("bitmap", "--add", "bm.qcow2", "b1")
        try img("bitmap", "--add", "-g", "512", "bm.qcow2", "longer-name-bitmap")
        try corruptFirstCompressedCluster(of: "comp.qcow2", into: "badcomp.qcow2")
    }

    /// Copies `source` and overwrites the start of its first compressed
    /// cluster (in the first L2 table) with 0xff bytes, so that reading it
    /// fails (EIO): the read-error paths of the verbs.
    func corruptFirstCompressedCluster(of source: String, into copy: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file(source))))
        func be(_ offset: Int, _ width: Int) -> UInt64 {
            bytes[offset..<(offset + width)].reduce(0) { $0 << 8 | UInt64($1) }
        }
        let clusterBits = Int(be(20, 4))
        let l2Offset = Int(be(Int(be(40, 8)), 8) & 0x00ff_ffff_ffff_fe00)
        for index in 0..<((1 << clusterBits) / 8) {
            let entry = be(l2Offset + index * 8, 8)
            guard entry >> 62 & 1 == 1 else { continue }
            let host = Int(entry & ((1 << (62 - (clusterBits - 8))) - 1))
            for i in host..<(host + 64) { bytes[i] = 0xff }
            break
        }
        try Data(bytes).write(to: URL(fileURLWithPath: file(copy)))
    }

    static let fixtures = ["base.qcow2", "top.qcow2", "top.raw", "flat.qcow2", "comp.qcow2", "odd.qcow2", "odd.raw",
                           "hole.raw", "big.qcow2", "bigz.qcow2", "ext.qcow2", "empty.raw", "empty.qcow2",
                           "v2.qcow2", "bm.qcow2"]
}
