// `qemu-img measure` against qcowkit's: the fixture images measured as raw
// and as qcow2 with every cluster size, refcount width, extended L2, compat
// level, preallocation mode and a backing file; --size alone; JSON output;
// the errors of option parsing and of the qcow2 driver, word for word.
import Foundation
import Testing

@Suite("measure: qemu-img 7.2's sizes and messages")
struct MeasureInteropTests {
    static let targets: [[String]] = [
        [], ["-O", "raw"], ["-O", "qcow2"], ["-O", "qcow2", "-o", "cluster_size=512"],
        ["-O", "qcow2", "-o", "cluster_size=4k,refcount_bits=1"], ["-O", "qcow2", "-o", "cluster_size=2M,refcount_bits=64"],
        ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=16k"], ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=2M"],
        ["-O", "qcow2", "-o", "compat=0.10"], ["-O", "qcow2", "-o", "preallocation=metadata"],
        ["-O", "qcow2", "-o", "preallocation=falloc,refcount_bits=8"], ["-O", "qcow2", "-o", "preallocation=full"],
        ["-O", "qcow2", "-o", "backing_file=base.qcow2"],
    ]

    @Test("fixture images, every target layout, human and JSON")
    func images() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        var differences: [String] = []
        for image in QemuImgDifferential.fixtures {
            for target in Self.targets {
                for json in [false, true] {
                    let arguments = ["measure"] + target + (json ? ["--output=json"] : []) + [image]
                    if let difference = try run.difference(arguments) { differences.append(difference) }
                }
            }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }

    @Test("--size alone, from 0 to the L1 table's limit")
    func sizes() throws {
        let run = try QemuImgDifferential()
        var differences: [String] = []
        for size in ["0", "1", "511", "512", "65537", "1G", "1.5G", "4T", "100P", "8E", "0x10k"] {
            for target in Self.targets where !target.contains("backing_file=base.qcow2") {
                if let difference = try run.difference(["measure"] + target + ["--size", size]) {
                    differences.append(difference)
                }
            }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }

    @Test("errors: bad options, formats, sizes and argument combinations")
    func errors() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let cases: [[String]] = [
            ["-O", "qcow2", "-o", "cluster_size=3000", "--size", "1G"], ["-O", "qcow2", "-o", "cluster_size=0", "--size", "1"],
            ["-O", "qcow2", "-o", "compat=0.10,refcount_bits=8", "--size", "1G"],
            ["-O", "qcow2", "-o", "refcount_bits=3", "--size", "1G"], ["-O", "qcow2", "-o", "refcount_bits=abc", "--size", "1"],
            ["-O", "qcow2", "-o", "preallocation=bogus", "--size", "1G"], ["-O", "qcow2", "-o", "bogus=1", "--size", "1G"],
            ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=4k", "--size", "1G"],
            ["-O", "qcow2", "-o", "extended_l2=maybe", "--size", "1"],
            ["-O", "qcow2", "-o", "compat=bad", "--size", "1G"], ["-O", "qcow2", "-o", "compat=v3", "--size", "1G"],
            ["-O", "raw", "-o", "cluster_size=1", "--size", "1"], ["-O", "foo", "--size", "1G"],
            ["--size", "1G", "top.qcow2"], ["-f", "qcow2"], ["-O", "qcow2", "-o", "size=5G"], ["--size=-1"],
            ["--size", "1Q"], ["a", "b"], ["-o", ",a", "--size", "1"], ["--output=xml", "--size", "1"],
            ["missing.qcow2"], ["-f", "raw", "top.qcow2"], ["-O", "qcow2", "-o", "size=5G", "top.qcow2"],
        ]
        let differences = try cases.compactMap { try run.difference(["measure"] + $0) }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }
}
