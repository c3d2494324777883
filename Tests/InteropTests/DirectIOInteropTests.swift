// cache=none / directsync (O_DIRECT) against QEMU 7.2 with the same cache
// mode, in the test's temporary directory (a disk file system that takes
// O_DIRECT): convert leaves the same bytes as qemu-img's, qemu-io's
// unaligned requests print and leave the same as qemu-io's, strace shows
// the same files opened with O_DIRECT, and a file system that refuses it
// gets QEMU's message.
import Foundation
import Testing
import TestSupport

@Suite("O_DIRECT (-t none / directsync) against QEMU 7.2")
struct DirectIOInteropTests {
    @Test("convert -t none / -T none: the same messages and the same output bytes as qemu-img")
    func convert() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let cases: [(options: [String], source: String, ext: String)] = [
            (["-t", "none", "-O", "qcow2"], "top.qcow2", "qcow2"),
            (["-T", "none", "-t", "directsync", "-O", "raw"], "odd.qcow2", "raw"),
            (["-t", "none", "-O", "qcow2", "-o", "cluster_size=4096"], "odd.raw", "qcow2"),
            (["-T", "directsync", "-t", "none", "-c", "-O", "qcow2"], "top.qcow2", "qcow2"),
        ]
        var differences: [String] = []
        for (index, item) in cases.enumerated() {
            differences += try Self.compare(run, tool: "qemu-img", label: "\(item)", files: "convert\(index).\(item.ext)") {
                ["convert"] + item.options + [item.source, $0]
            }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
    }

    @Test("qemu-io -t none / -n: unaligned requests print and leave what qemu-io's do")
    func unalignedIO() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let commands = ["write -P 0x33 1 1000", "read -P 0x33 1 1000", "read -v 4090 20", "write -P 0x44 65535 70000",
                        "read -P 0x44 65535 70000", "aio_write -P 0x55 511 3", "aio_flush", "read -v 500 16",
                        "write -z 3 5000", "read -v 0 16", "read -v 2999990 11"]
        var differences: [String] = []
        for (index, (image, flag)) in [("flat.qcow2", ["-t", "none"]), ("odd.raw", ["-n"]), ("odd.qcow2", ["-t", "directsync"])].enumerated() {
            let ext = image.hasSuffix(".raw") ? "raw" : "qcow2"
            differences += try Self.compare(run, tool: "qemu-io", label: "\(image) \(flag)", files: "io\(index).\(ext)",
                                            copying: image) { flag + ["-f", ext] + commands.flatMap { ["-c", $0] } + [$0] }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
    }

    @Test("a file system that refuses O_DIRECT (procfs): qemu's message and exit status")
    func refused() throws {
        // This kernel's tmpfs takes O_DIRECT (qemu-img succeeds on /dev/shm);
        // procfs files refuse it, and QEMU names the same cause for both.
        let run = try QemuImgDifferential()
        var differences: [String?] = []
        for arguments in [["convert", "-T", "none", "-O", "raw", "/proc/version", "out.raw"],
                          ["bench", "-c", "1", "-t", "none", "-f", "raw", "/proc/version"],
                          ["convert", "-T", "directsync", "-f", "raw", "-O", "qcow2", "/proc/version", "out.qcow2"]] {
            differences.append(try run.difference(arguments))
        }
        differences.append(try run.difference(["-n", "-f", "raw", "-c", "read 0 512", "/proc/version"], tool: "qemu-io"))
        differences.append(try run.difference(["-t", "none", "-r", "-f", "raw", "-c", "read 0 512", "/proc/version"],
                                              tool: "qemu-io"))
        let found = differences.compactMap { $0 }
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }

    /// Runs QEMU's `tool` and qcowkit's with `arguments(file)`, each on its
    /// own file (a copy of `copying`, or made by the run); the differences
    /// in outcome (qemu-io's rate lines aside: they hold times) or in the
    /// resulting file.
    private static func compare(_ run: QemuImgDifferential, tool: String, label: String, files name: String,
                                copying source: String? = nil, _ arguments: (String) -> [String]) throws -> [String] {
        let (theirs, mine) = ("theirs-\(name)", "mine-\(name)")
        if let source {
            try FileManager.default.copyItem(atPath: run.file(source), toPath: run.file(theirs))
            try FileManager.default.copyItem(atPath: run.file(source), toPath: run.file(mine))
        }
        var expected = try run.theirs(arguments(theirs), tool: tool)
        var actual = try run.mine(arguments(mine), tool: tool)
        expected.stdout = withoutRates(expected.stdout)
        actual.stdout = withoutRates(actual.stdout)
        actual.stderr = actual.stderr.replacingOccurrences(of: mine, with: theirs)
        var differences: [String] = []
        if expected != actual { differences.append("\(label): \(expected) vs \(actual)") }
        if !run.sameBytes(theirs, mine) { differences.append("\(label): the resulting files differ") }
        return differences
    }

    private static func withoutRates(_ text: String) -> String {
        text.split(separator: "\n").filter { !$0.contains(" ops; ") }.joined(separator: "\n")
    }

    @Test("the image files (and a backing file) are opened O_DIRECT, as qemu-img opens them")
    func openFlags() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        _ = try TestTools.program("strace", package: "strace")
        func directOpens(_ command: [String]) throws -> Set<String> {
            let trace = run.file("trace.txt")
            try? FileManager.default.removeItem(atPath: trace)
            _ = try QemuOracle.run(["strace", "-f", "-e", "trace=openat", "-o", trace] + command, in: run.directory)
            let lines = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n")
            var names: Set<String> = []
            for line in lines where !line.contains("= -1")
                && line.split(whereSeparator: { "|, ".contains($0) }).contains("O_DIRECT") {
                if let start = line.firstIndex(of: "\""), let end = line[line.index(after: start)...].firstIndex(of: "\"") {
                    names.insert(String(line[line.index(after: start)..<end]))
                }
            }
            return names
        }
        let commands: [[String]] = [
            ["convert", "-t", "none", "-T", "none", "-O", "qcow2", "top.qcow2", "out.qcow2"],
            ["bench", "-q", "-c", "10", "-t", "none", "top.qcow2"],
            ["convert", "-t", "writeback", "-O", "qcow2", "top.qcow2", "plain.qcow2"],
        ]
        for command in commands {
            let theirs = try directOpens(["qemu-img"] + command)
            let mine = try directOpens([run.ours] + command)
            #expect(theirs == mine, "\(command)")
        }
        #expect(try directOpens([run.ours, "bench", "-q", "-c", "1", "-t", "none", "top.qcow2"]) == ["top.qcow2", "base.qcow2"])
        let io = try directOpens([run.oursIO, "-n", "-c", "read 0 512", "top.qcow2"])
        #expect(io == (try directOpens(["qemu-io", "-n", "-c", "read 0 512", "top.qcow2"])))
        #expect(io.contains("top.qcow2"))
    }
}
