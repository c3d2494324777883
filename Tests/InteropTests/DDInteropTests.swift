// `qemu-img dd` against qcowkit's: block sizes, counts and skips (past the
// end too) on chains, raw, compressed, odd-sized and empty images, raw and
// qcow2 output; the messages, exit codes and the output files byte for byte.
import Foundation
import Testing

@Suite("dd: qemu-img 7.2's copies and messages")
struct DDInteropTests {
    /// Runs both tools, each writing its own output file, and compares the
    /// outcomes and the two files.
    func difference(_ run: QemuImgDifferential, _ arguments: [String]) throws -> String? {
        for name in ["theirs.img", "mine.img"] { try? FileManager.default.removeItem(atPath: run.file(name)) }
        let expected = try run.theirs(["dd"] + arguments + ["of=theirs.img"])
        var actual = try run.mine(["dd"] + arguments + ["of=mine.img"])
        actual.stderr = actual.stderr.replacingOccurrences(of: "mine.img", with: "theirs.img")
        let exists = (FileManager.default.fileExists(atPath: run.file("theirs.img")),
                      FileManager.default.fileExists(atPath: run.file("mine.img")))
        let sameFile = exists.0 == exists.1 && (!exists.0 || run.sameBytes("theirs.img", "mine.img"))
        guard expected != actual || !sameFile else { return nil }
        return "dd \(arguments.joined(separator: " ")) (same output file: \(sameFile))\n== qemu: \(expected)\n== qcowkit: \(actual)"
    }

    @Test("block sizes, counts and skips; raw and qcow2 output, byte for byte")
    func copies() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        var differences: [String] = []
        let operandSets: [[String]] = [
            [], ["bs=64k"], ["bs=1000", "count=7"], ["bs=1M", "count=2", "skip=1"], ["bs=4k", "skip=10"],
            ["skip=100000"], ["count=0"], ["bs=3M"], ["bs=1.5k", "count=3k"], ["bs=65537", "skip=3", "count=40"],
            ["bs=1k", "count=1k", "skip=1k"],
        ]
        for image in ["top.qcow2", "top.raw", "comp.qcow2", "odd.qcow2", "ext.qcow2", "empty.raw", "big.qcow2"] {
            for output in [[], ["-O", "qcow2"]] {
                for operands in operandSets {
                    if let difference = try difference(run, output + ["if=\(image)"] + operands) {
                        differences.append(difference)
                    }
                }
            }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }

    @Test("bad operands, sizes, formats and files")
    func errors() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let cases: [[String]] = [
            ["bs=0", "if=top.qcow2"], ["bs=3G", "if=top.qcow2"], ["count=-1", "if=top.qcow2"],
            ["osize=1M", "if=top.qcow2"], ["foo=1", "if=top.qcow2"], ["junk", "if=top.qcow2"], ["if=missing"],
            ["-O", "foo", "if=top.qcow2"], ["-f", "raw", "if=top.qcow2"], ["-f", "qcow2", "if=top.raw"],
            ["bs=x", "if=top.qcow2"], ["skip=1Q", "if=top.qcow2"], ["bs=0x10k", "if=top.qcow2"],
            ["-x", "if=top.qcow2"], ["if=top.qcow2", "if=base.qcow2", "count=1"], ["if=badcomp.qcow2"],
            ["-O", "qcow2", "if=badcomp.qcow2", "bs=64k"],
        ]
        var differences = try cases.compactMap { try difference(run, $0) }
        for arguments in [["dd"], ["dd", "if=top.qcow2"], ["dd", "if=top.qcow2", "of=/nonexistent-dir/x"]] {
            if let difference = try run.difference(arguments) { differences.append(difference) }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }
}
