// Every `convert` flag against qemu-img 7.2 convert on the same inputs: the
// same exit status, the same stdout (progress lines) and stderr (messages,
// the program name aside), and the same target bytes where qemu-img writes
// deterministically; out-of-order writes (-W) are checked with qemu-img
// compare and check instead.
import Foundation
import TestSupport
import Testing

/// Source images for the convert differential tests, made by qemu-img and
/// qemu-io: a qcow2 chain with data, zero writes, discards and compressed
/// clusters; a raw file with holes and an odd tail; an empty image; a
/// qcow2 with an unreadable (corrupt) compressed cluster.
private func makeConvertSources(_ dir: ScratchDirectory) throws {
    try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", dir.file("base.qcow2"), "6M")
    try QemuOracle.qemuIO(dir.file("base.qcow2"), ["write -P 0x55 0 1M", "write -P 0x66 2M 12k", "write -c -P 0x77 4M 64k"])
    try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.file("top.qcow2"), in: dir.url)
    try QemuOracle.qemuIO(dir.file("top.qcow2"), ["write -P 0x88 512k 1M", "write -z 2M 4k", "write -P 0x99 5M 3k",
                                                  "discard 0 64k", "write -c -P 0x44 3M 64k"])
    try QemuOracle.qemuImg("create", "-q", "-f", "raw", dir.file("raw.img"), "5M")
    try QemuOracle.qemuIO(dir.file("raw.img"), ["write -P 1 0 100k", "write -P 2 1M 4k", "write -z 2M 64k", "write -P 3 3M 513"],
                          format: "raw")
    // An odd-sized raw file (its last sector is partial).
    try Data(repeating: 0x5a, count: 70_001).write(to: URL(fileURLWithPath: dir.file("odd.raw")))
    try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", dir.file("empty.qcow2"), "0")
    try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", dir.file("bad.qcow2"), "1M")
    try QemuOracle.qemuIO(dir.file("bad.qcow2"), ["write -c -P 0x41 0 64k", "write -P 0x42 64k 64k"])
    // The compressed cluster's data follows the header, refcount table and
    // block, L1 and L2 clusters (64 KiB each): make it undecodable.
    let bad = try FileHandle(forWritingTo: URL(fileURLWithPath: dir.file("bad.qcow2")))
    try bad.seek(toOffset: 5 * 65536)
    try bad.write(contentsOf: Data(repeating: 0xff, count: 10))
    try bad.close()
}

struct ConvertFlagCase: CustomStringConvertible, Sendable {
    /// Arguments before the target name (which both tools get as "out").
    var arguments: [String]
    /// An existing target for -n: format and size, made by qemu-img first.
    var existingTarget: (format: String, size: String)?
    /// qemu-img's output is not deterministic (-W): compare contents instead.
    var contentOnly = false
    /// What qemu-img 7.2 is given instead: QEMU 10's long spellings
    /// (--parallel, --oob-writes, --copy-range-offloading) are checked
    /// against the 7.2 short flags they stand for.
    var qemuArguments: [String]?
    var description: String { (existingTarget.map { ["[\($0.format) \($0.size)]"] } ?? []).joined() + arguments.joined(separator: " ") }
}

let convertFlagCases: [ConvertFlagCase] = [
    // Progress, quiet, parallelism, rate, cache modes.
    .init(arguments: ["-p", "-O", "qcow2", "top.qcow2"]),
    .init(arguments: ["-p", "-O", "qcow2", "-S", "0", "raw.img"]),
    .init(arguments: ["-p", "-q", "-O", "raw", "top.qcow2"]),
    .init(arguments: ["-p", "nonexistent.qcow2"]),
    .init(arguments: ["-q", "-O", "qcow2", "-c", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-m", "1", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-m", "16", "-c", "raw.img"]),
    .init(arguments: ["-O", "qcow2", "-m", "0x10", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-r", "1G", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-t", "none", "-T", "none", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-t", "writethrough", "top.qcow2"]),
    .init(arguments: ["-O", "raw", "-t", "directsync", "-T", "unsafe", "top.qcow2"]),
    .init(arguments: ["-U", "-O", "qcow2", "top.qcow2"]),
    .init(arguments: ["--parallel", "2", "--progress", "-O", "qcow2", "top.qcow2"],
          qemuArguments: ["-m", "2", "-p", "-O", "qcow2", "top.qcow2"]),
    // Sparse detection.
    .init(arguments: ["-O", "qcow2", "-S", "0", "top.qcow2"]),
    .init(arguments: ["-O", "raw", "-S", "0", "raw.img"]),
    .init(arguments: ["-O", "qcow2", "-S", "512", "raw.img"]),
    .init(arguments: ["-O", "qcow2", "-S", "64k", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-S", "16M", "-o", "cluster_size=512", "raw.img"]),
    // Backing files.
    .init(arguments: ["-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "-S", "0", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-B", "raw.img", "-F", "raw", "raw.img"]),
    .init(arguments: ["-O", "qcow2", "-B", "base.qcow2", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-o", "backing_file=base.qcow2", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "top.qcow2", "raw.img"]),
    .init(arguments: ["-O", "raw", "-B", "base.qcow2", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-B", "nonexistent.qcow2", "-F", "qcow2", "top.qcow2"]),
    // Several sources, odd and empty images.
    .init(arguments: ["-O", "qcow2", "raw.img", "top.qcow2", "odd.raw"]),
    .init(arguments: ["-O", "raw", "odd.raw", "empty.qcow2", "raw.img"]),
    .init(arguments: ["-O", "qcow2", "-c", "raw.img", "odd.raw"]),
    .init(arguments: ["-O", "qcow2", "empty.qcow2"]),
    // Creation options of either format.
    .init(arguments: ["-O", "raw", "-o", "preallocation=falloc", "top.qcow2"]),
    .init(arguments: ["-O", "raw", "-o", "preallocation=full", "raw.img"]),
    .init(arguments: ["-O", "raw", "-o", "preallocation=bogus", "raw.img"]),
    .init(arguments: ["-O", "qcow2", "-o", "preallocation=metadata", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-o", "preallocation=falloc,cluster_size=512", "raw.img"]),
    // Existing targets (-n, --target-is-zero).
    .init(arguments: ["-n", "-O", "qcow2", "top.qcow2"], existingTarget: ("qcow2", "6M")),
    .init(arguments: ["-n", "-O", "qcow2", "--target-is-zero", "top.qcow2"], existingTarget: ("qcow2", "6M")),
    .init(arguments: ["-n", "top.qcow2"], existingTarget: ("raw", "6M")),
    .init(arguments: ["-n", "-O", "qcow2", "-S", "0", "raw.img"], existingTarget: ("qcow2", "8M")),
    .init(arguments: ["-n", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "top.qcow2"], existingTarget: ("qcow2", "6M")),
    .init(arguments: ["-n", "-O", "qcow2", "raw.img", "top.qcow2"], existingTarget: ("qcow2", "12M")),
    .init(arguments: ["-n", "-O", "qcow2", "top.qcow2"], existingTarget: ("qcow2", "1M")),
    .init(arguments: ["-n", "-O", "raw", "-c", "top.qcow2"], existingTarget: ("raw", "6M")),
    .init(arguments: ["-n", "-O", "qcow2", "-B", "base.qcow2", "--target-is-zero", "top.qcow2"], existingTarget: ("qcow2", "6M")),
    .init(arguments: ["-p", "-n", "-O", "qcow2", "-B", "base.qcow2", "--target-is-zero", "top.qcow2"], existingTarget: ("qcow2", "6M")),
    // Copy offloading.
    .init(arguments: ["-O", "raw", "-C", "raw.img"]),
    .init(arguments: ["-n", "-O", "raw", "-C", "raw.img", "odd.raw"], existingTarget: ("raw", "6M")),
    .init(arguments: ["--copy-range-offloading", "-O", "qcow2", "top.qcow2"], qemuArguments: ["-C", "-O", "qcow2", "top.qcow2"]),
    // Salvage: a corrupt compressed cluster becomes zeroes, a warning per sector.
    .init(arguments: ["-O", "qcow2", "bad.qcow2"]),
    .init(arguments: ["-p", "-O", "qcow2", "bad.qcow2"]),
    .init(arguments: ["-O", "qcow2", "--salvage", "bad.qcow2"]),
    .init(arguments: ["-O", "raw", "--salvage", "-q", "bad.qcow2"]),
    // Out-of-order writes: valid and content-equal.
    .init(arguments: ["-O", "qcow2", "-W", "top.qcow2"], contentOnly: true),
    .init(arguments: ["-O", "qcow2", "--oob-writes", "-m", "16", "raw.img", "top.qcow2"], contentOnly: true,
          qemuArguments: ["-O", "qcow2", "-W", "-m", "16", "raw.img", "top.qcow2"]),
    .init(arguments: ["-O", "qcow2", "-W", "-c", "top.qcow2"], contentOnly: true),
    // Refusals, in qemu-img's words.
    .init(arguments: ["-m", "0", "top.qcow2"]), .init(arguments: ["-m", "17", "top.qcow2"]),
    .init(arguments: ["-m", "x", "top.qcow2"]), .init(arguments: ["-r", "x", "top.qcow2"]),
    .init(arguments: ["-r", "99999999999999999999", "top.qcow2"]), .init(arguments: ["-S", "3", "top.qcow2"]),
    .init(arguments: ["-S", "100M", "top.qcow2"]), .init(arguments: ["-S", "x", "top.qcow2"]),
    .init(arguments: ["-c", "-C", "top.qcow2"]), .init(arguments: ["-S", "0", "-C", "top.qcow2"]),
    .init(arguments: ["--salvage", "-C", "top.qcow2"]), .init(arguments: ["-n", "-o", "cluster_size=4k", "top.qcow2"]),
    .init(arguments: ["--target-is-zero", "top.qcow2"]), .init(arguments: ["-t", "bogus", "-O", "qcow2", "top.qcow2"]),
    .init(arguments: ["-T", "bogus", "top.qcow2"]), .init(arguments: ["-O", "qcow2", "-o", "preallocation=metadata", "-c", "top.qcow2"]),
    .init(arguments: ["-O", "raw", "-c", "top.qcow2"]), .init(arguments: ["-O", "raw", "-F", "qcow2", "top.qcow2"]),
    .init(arguments: ["-l", "snap", "top.qcow2", "raw.img"]),
]

@Suite("convert flags against qemu-img 7.2")
struct ConvertFlagsInteropTests {
    @Test("same status, output and target as qemu-img convert", arguments: convertFlagCases)
    func sameAsQemu(_ c: ConvertFlagCase) throws {
        let dir = try ScratchDirectory()
        try makeConvertSources(dir)
        let theirs = try run(["qemu-img", "convert"], c, target: "theirs.out", in: dir)
        let ours = try run(["qcowkit", "convert"], c, target: "ours.out", in: dir)
        #expect(ours.result.status == theirs.result.status, "stderr: \(ours.result.errorOutput)")
        #expect(ours.result.output == theirs.result.output)
        #expect(normalised(ours.result.errorOutput, "qcowkit") == normalised(theirs.result.errorOutput, "qemu-img"))
        let theirsExists = FileManager.default.fileExists(atPath: dir.file("theirs.out"))
        #expect(FileManager.default.fileExists(atPath: dir.file("ours.out")) == theirsExists)
        guard theirsExists, theirs.result.status == 0 else { return }
        if c.contentOnly {
            let compare = try QemuOracle.qemuImg("compare", dir.file("theirs.out"), dir.file("ours.out"), check: false)
            #expect(compare.status == 0, "qemu-img compare: \(compare.output)")
            let check = try QemuOracle.qemuImg("check", dir.file("ours.out"), check: false)
            #expect(check.status == 0, "qemu-img check: \(check.output)")
        } else {
            let same = try QemuOracle.run(["cmp", dir.file("theirs.out"), dir.file("ours.out")], check: false)
            #expect(same.status == 0, "not byte-identical to qemu-img's: \(same.output)")
        }
    }

    /// Runs one tool on the case, first making its existing target for -n.
    private func run(_ tool: [String], _ c: ConvertFlagCase, target: String, in dir: ScratchDirectory) throws -> (result: ProcessResult, target: String) {
        if let existing = c.existingTarget {
            try QemuOracle.qemuImg("create", "-q", "-f", existing.format, dir.file(target), existing.size)
            if existing.format == "qcow2" { try QemuOracle.qemuIO(dir.file(target), ["write -P 9 0 512k"]) }
        }
        let arguments = tool[0] == "qemu-img" ? c.qemuArguments ?? c.arguments : c.arguments
        return (try QemuOracle.run(tool + arguments + [target], in: dir.url, check: false), target)
    }

    /// Messages with the program name at the start of each line replaced,
    /// and the target's own name (which differs) made neutral.
    private func normalised(_ text: String, _ program: String) -> String {
        text.replacingOccurrences(of: "\(program): ", with: "PROGRAM: ")
            .replacingOccurrences(of: "theirs.out", with: "TARGET").replacingOccurrences(of: "ours.out", with: "TARGET")
    }

    @Test("-o help lists the target format's creation options, as create -o help does")
    func optionHelp() throws {
        let dir = try ScratchDirectory()
        for (format, withFile) in [("qcow2", false), ("qcow2", true), ("raw", true)] {
            let files = withFile ? ["a", "b"] : []
            let convert = try QemuOracle.qcowkit("convert", in: dir.url, arguments: ["-O", format, "-o", "help"] + files)
            let create = try QemuOracle.qcowkit("create", in: dir.url, arguments: ["-f", format, "-o", "help"] + files.suffix(1))
            #expect(convert.status == 0)
            #expect(convert.output == create.output)
            #expect(convert.output.contains("Supported "))
        }
    }

    @Test("progress is drawn on a pseudo-terminal as qemu-img draws it")
    func progressOnTerminal() throws {
        let dir = try ScratchDirectory()
        try makeConvertSources(dir)
        let qcowkit = try TestTools.qcowkit()
        func onTerminal(_ command: String) throws -> String {
            try QemuOracle.run(["script", "-qec", command, "/dev/null"], in: dir.url).output
        }
        let theirs = try onTerminal("qemu-img convert -p -O qcow2 top.qcow2 theirs.out")
        let ours = try onTerminal("\(qcowkit) convert -p -O qcow2 top.qcow2 ours.out")
        #expect(theirs.contains("(100.00/100%)"))
        #expect(ours == theirs)
        // Without -p nothing is drawn, terminal or not.
        #expect(try onTerminal("\(qcowkit) convert -O qcow2 top.qcow2 ours.out").isEmpty)
    }
}
