// `qemu-img bench` against qcowkit's: the lines printed (run times aside),
// the option checks and the request failures; write runs leave the same
// image content as qemu-img's (compared with qemu-img compare, and clean
// under qemu-img check). The queue depth is pinned in QcowKitCommandsTests.
import Foundation
import Testing

@Suite("bench: qemu-img 7.2's lines, checks and effects")
struct BenchInteropTests {
    @Test("read runs, option checks and failed requests")
    func lines() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        var cases: [[String]] = []
        for image in ["top.qcow2", "top.raw", "comp.qcow2", "odd.qcow2", "ext.qcow2"] {
            for options in [["-c", "100"], ["-c", "1000", "-d", "4"], ["-c", "10", "-s", "3M"], ["-c", "10", "-o", "5M"],
                            ["-c", "3", "-S", "1.5k"], ["-c", "5", "-s", "0"], ["-c", "0"],
                            ["-c", "100", "-d", "1", "-s", "512", "-S", "64k"], ["-q", "-c", "10", "-t", "none"]] {
                cases.append(options + [image])
            }
        }
        cases += [
            ["-c", "abc", "top.qcow2"], ["-c", "-1", "top.qcow2"], ["-c", "5x", "top.qcow2"], ["-c", " 5", "top.qcow2"],
            ["-c", "0x10", "-c", "1", "top.qcow2"], ["--pattern=256", "top.qcow2"], ["--flush-interval=5", "top.qcow2"],
            ["-w", "--flush-interval=5", "top.qcow2"], ["-i", "foo", "top.qcow2"], ["-t", "foo", "top.qcow2"],
            ["-s", "3G", "top.qcow2"], ["top.qcow2", "x"], ["-c", "10", "-n", "top.qcow2"],
            ["-c", "10", "-i", "native", "top.qcow2"], ["-c", "10", "-i", "native", "-t", "none", "top.qcow2"],
            ["-c", "1", "-o", "-1", "top.qcow2"], ["-x", "top.qcow2"], ["missing.qcow2"], ["-f", "raw", "-c", "1", "top.qcow2"],
            ["-f", "foo", "-c", "1", "top.qcow2"], ["-c", "1"], ["-c", "100", "-s", "64k", "badcomp.qcow2"],
        ]
        let differences = try cases.compactMap { try run.difference(["bench"] + $0) }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }

    @Test("write runs: the same lines and the same resulting data as qemu-img's")
    func writes() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let runs: [[String]] = [
            ["-w", "-c", "300", "-d", "16", "--pattern=7", "-s", "4k", "-S", "12k"],
            ["-w", "-c", "200", "-d", "8", "--flush-interval=16"],
            ["-w", "-c", "200", "-d", "8", "--flush-interval=16", "--no-drain", "--pattern=0x41", "-s", "1000"],
            ["-w", "-c", "50", "-t", "writethrough", "-o", "1M"],
        ]
        var differences: [String] = []
        for (index, options) in runs.enumerated() {
            for image in ["base.qcow2", "top.raw"] {
                let ext = image.hasSuffix(".raw") ? "raw" : "qcow2"
                let (theirs, mine) = ("theirs\(index).\(ext)", "mine\(index).\(ext)")
                try FileManager.default.copyItem(atPath: run.file(image), toPath: run.file(theirs))
                try FileManager.default.copyItem(atPath: run.file(image), toPath: run.file(mine))
                let expected = try run.theirs(["bench"] + options + [theirs])
                var actual = try run.mine(["bench"] + options + [mine])
                actual.stderr = actual.stderr.replacingOccurrences(of: mine, with: theirs)
                if expected != actual { differences.append("\(options): \(expected) vs \(actual)") }
                let compare = try QemuOracle.run(["qemu-img", "compare", theirs, mine], in: run.directory, check: false)
                if compare.status != 0 { differences.append("\(options) \(image): \(compare.output)") }
                if ext == "qcow2" {
                    let check = try QemuOracle.run(["qemu-img", "check", mine], in: run.directory, check: false)
                    if check.status != 0 { differences.append("\(options): check \(check.output)") }
                }
            }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
    }

    @Test("a depth of 0 is refused (qemu-img waits for ever)")
    func zeroDepth() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let outcome = try run.mine(["bench", "-d", "0", "-c", "10", "top.qcow2"])
        #expect(outcome == .init(status: 1, stdout: "", stderr: "qemu-img: Invalid queue depth specified\n"))
    }
}
