// `qemu-img compare` against qcowkit's: every pair of the fixture images
// (chains with data, zeroes, discards, compressed clusters, raw, odd sizes,
// different sizes, empty images), plain and strict, then the usage errors:
// the same lines on both streams and the same exit codes.
import Foundation
import Testing

@Suite("compare: qemu-img 7.2's messages and exit codes")
struct CompareInteropTests {
    @Test("every pair of fixture images, plain and strict (-s)")
    func pairs() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let images = ["base.qcow2", "top.qcow2", "top.raw", "flat.qcow2", "comp.qcow2", "odd.qcow2", "odd.raw",
                      "hole.raw", "big.qcow2", "bigz.qcow2", "ext.qcow2", "empty.raw", "empty.qcow2"]
        var differences: [String] = []
        for a in images {
            for b in images {
                for strict in [false, true] {
                    let arguments = ["compare"] + (strict ? ["-s"] : []) + [a, b]
                    if let difference = try run.difference(arguments) { differences.append(difference) }
                }
            }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }

    @Test("formats, quiet mode, cache modes, progress and usage errors")
    func options() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let cases: [[String]] = [
            ["compare", "-q", "top.qcow2", "flat.qcow2"], ["compare", "-q", "top.qcow2", "base.qcow2"],
            ["compare", "-f", "qcow2", "-F", "raw", "top.qcow2", "top.raw"],
            ["compare", "-f", "raw", "top.qcow2", "top.raw"], ["compare", "-F", "qcow2", "top.qcow2", "top.raw"],
            ["compare", "-f", "vmdkx", "top.qcow2", "top.raw"],
            ["compare", "-T", "none", "top.qcow2", "top.raw"], ["compare", "-T", "bogus", "top.qcow2", "top.raw"],
            ["compare", "-U", "top.qcow2", "top.raw"], ["compare", "--force-share", "top.qcow2", "top.raw"],
            ["compare", "-p", "top.qcow2", "flat.qcow2"], ["compare", "-p", "top.qcow2", "base.qcow2"],
            ["compare", "-p", "-q", "top.qcow2", "base.qcow2"],
            ["compare", "top.qcow2"], ["compare"], ["compare", "a", "b", "c"],
            ["compare", "-x", "a", "b"], ["compare", "-qx", "a", "b"], ["compare", "-xq", "a", "b"],
            ["compare", "a", "-xq", "b"], ["compare", "--bogus", "a", "b"], ["compare", "-f"],
            ["compare", "a", "b", "-T"], ["compare", "--image-opts=x", "a", "b"],
            ["compare", "missing.qcow2", "top.qcow2"], ["compare", "top.qcow2", "missing.qcow2"],
            // A compressed cluster that cannot be decompressed: exit status 4.
            ["compare", "badcomp.qcow2", "top.qcow2"], ["compare", "top.qcow2", "badcomp.qcow2"],
            ["compare", "-s", "badcomp.qcow2", "comp.qcow2"], ["compare", "badcomp.qcow2", "empty.qcow2"],
        ]
        let differences = try cases.compactMap { try run.difference($0) }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }
}
