// query-block against QEMU 7.2: qemu-storage-daemon lists no block backend
// for -blockdev nodes (an empty list), and qemu-system-x86_64 lists each
// -drive if=none as a backend with no guest device; `qcowkit serve` with
// the same options on copies of the same images must answer the same,
// dirty-bitmaps included. Compared with node names normalized ("#blockN"),
// the directory replaced, and the two BlockDeviceInfo differences QcowKit
// keeps for the acceptance scenario taken out (Tests/ConformanceTests/
// QemuKnownDifferences.swift: our `encryption_key_missing`, QEMU's qcow2
// `format-specific`).
import Foundation
import Testing
import TestSupport

@Suite("query-block against qemu-storage-daemon and qemu-system-x86_64 7.2")
struct QueryBlockInteropTests {
    static let requests = [
        #"{"execute":"qmp_capabilities"}"#,
        #"{"execute":"query-block"}"#,
        #"{"execute":"block-dirty-bitmap-add","arguments":{"node":"d0","name":"t","granularity":512}}"#,
        #"{"execute":"block-dirty-bitmap-add","arguments":{"node":"d0","name":"p","persistent":true,"disabled":true}}"#,
        #"{"execute":"query-block"}"#,
        #"{"execute":"query-block","arguments":{"x":1}}"#,
        #"{"execute":"quit"}"#,
    ]

    /// A base with a bitmap (bits set) under a top with one: the same
    /// qemu-img steps in `dir`.
    static func makeChain(_ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", dir + "/base.qcow2", "10M"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", dir + "/base.qcow2", "b0"])
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                            dir + "/top.qcow2"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", "-g", "4096", dir + "/top.qcow2", "b1"])
        try QemuOracle.run(["qemu-io", "-c", "write 0 100k", "-c", "write 3M 1k", dir + "/top.qcow2"])
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "raw", dir + "/raw.img", "1M"])
    }

    static func replies(_ command: [String], dir: String) throws -> [String] {
        let result = try QemuOracle.run(command, check: false, input: requests.joined(separator: "\n") + "\n")
        #expect(result.status == 0, "\(command[0]): \(result.errorOutput)")
        return result.output.split(whereSeparator: \.isNewline).dropFirst().map(String.init)
            .filter { !$0.contains("\"event\"") }
            .map { $0.replacingOccurrences(of: dir, with: "DIR") }
            .map { $0.replacingOccurrences(of: #"#block[0-9]+"#, with: "#block", options: .regularExpression) }
            .map { $0.replacingOccurrences(of: #", "encryption_key_missing": false"#, with: "") }
    }

    /// Removes every `format-specific` member (its braces balanced).
    static func withoutFormatSpecific(_ line: String) -> String {
        var text = Substring(line)
        var out = ""
        let key = #", "format-specific": "#
        while let found = text.range(of: key) {
            out += text[..<found.lowerBound]
            var depth = 0
            var index = found.upperBound
            repeat {
                if text[index] == "{" { depth += 1 } else if text[index] == "}" { depth -= 1 }
                index = text.index(after: index)
            } while depth > 0
            text = text[index...]
        }
        return out + text
    }

    @Test("-drive if=none: the backends, their inserted nodes and dirty-bitmaps")
    func drives() throws {
        let root = NSTemporaryDirectory() + "qcowkit-query-block-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let theirs = root + "/theirs", ours = root + "/ours"
        try Self.makeChain(theirs)
        try Self.makeChain(ours)
        func drives(_ dir: String) -> [String] {
            ["-drive", "if=none,id=d0,file=\(dir)/top.qcow2",
             "-drive", "if=none,file=\(dir)/raw.img,format=raw,readonly=on"]
        }
        let expected = try Self.replies(["qemu-system-x86_64", "-nodefaults", "-machine", "none", "-display", "none",
                                         "-qmp", "stdio"] + drives(theirs), dir: theirs)
            .map(Self.withoutFormatSpecific)
        let actual = try Self.replies(["qcowkit", "serve", "-qmp", "stdio"] + drives(ours), dir: ours)
        #expect(expected.count == Self.requests.count)
        #expect(!expected.joined().contains("format-specific"))
        #expect(expected[4].contains(#""dirty-bitmaps": [{"name": "p""#))
        #expect(actual == expected)
    }

    @Test("-blockdev nodes: no block backend, an empty list as qemu-storage-daemon's")
    func blockdevNodes() throws {
        let root = NSTemporaryDirectory() + "qcowkit-query-block-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let theirs = root + "/theirs", ours = root + "/ours"
        try Self.makeChain(theirs)
        try Self.makeChain(ours)
        func options(_ dir: String) -> [String] {
            ["--blockdev", "driver=file,filename=\(dir)/top.qcow2,node-name=f",
             "--blockdev", "driver=qcow2,file=f,node-name=d0"]
        }
        let expected = try Self.replies(["qemu-storage-daemon", "--chardev", "stdio,id=m", "--monitor", "chardev=m"]
                                        + options(theirs), dir: theirs)
        let actual = try Self.replies(["qcowkit", "serve", "-qmp", "stdio"] + options(ours), dir: ours)
        #expect(expected.count == Self.requests.count)
        #expect(expected[1] == #"{"return": []}"#)
        #expect(actual == expected)
    }
}
