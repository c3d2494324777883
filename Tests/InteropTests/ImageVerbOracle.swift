// The differential harness of the image-changing verbs (resize, rebase,
// commit): a case's setup (qemu-img and qemu-io commands) runs once in a
// template directory, which is copied twice; qemu-img 7.2 runs the verb in
// one copy and qcowkit in the other. Then the printed lines (program name
// aside), the exit status and every file must agree, byte for byte where
// the case says QEMU is deterministic, else by `qemu-img compare` of the
// guest contents; every qcow2 file qcowkit left must pass `qemu-img check`.

import Foundation
import Testing
import TestSupport

struct ImageVerbCase: CustomTestStringConvertible, Sendable {
    var name: String
    /// Commands run in the template directory ("qemu-img ...", "qemu-io ...",
    /// "sh -c ..."), split on spaces unless given as arrays.
    var setup: [[String]]
    /// The verb and its arguments, as given to qemu-img and qcowkit.
    var arguments: [String]
    /// Files compared by guest content (`qemu-img compare`) rather than bytes.
    var contentOnly: Set<String> = []
    /// Standard output carries -p progress whose middle depends on timing
    /// (a job's): only its first and last values are compared.
    var timedProgress = false
    /// QEMU's own result fails `qemu-img check` (a QEMU bug the case
    /// reproduces): ours must fail it alike instead of passing.
    var checkAsQemu = false

    var testDescription: String { name }
}

/// Building blocks for setups.
enum ImageVerbSetup {
    static func qcow2(_ name: String, _ size: String, _ options: String = "", backing: String? = nil,
                      backingFormat: String = "qcow2") -> [String] {
        var command = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if !options.isEmpty { command += ["-o", options] }
        if let backing { command += ["-b", backing, "-F", backingFormat] }
        return command + [name, size]
    }

    static func io(_ name: String, _ commands: String..., format: String = "qcow2") -> [String] {
        ["qemu-io", "-f", format] + commands.flatMap { ["-c", $0] } + [name]
    }

    static func raw(_ name: String, bytes: Int, seed: UInt8 = 3) -> [String] {
        ["sh", "-c", "head -c \(bytes) /dev/zero | tr '\\000' '\\\(String(seed, radix: 8))' > \(name)"]
    }
}

enum ImageVerbOracle {
    /// Progress output reduced to its first and last values and what follows.
    static func progressEnds(_ output: String) -> [String] {
        let pieces = output.split(separator: "\r", omittingEmptySubsequences: false).map(String.init)
        guard pieces.count > 2 else { return pieces }
        return [pieces[0], pieces[pieces.count - 2], pieces[pieces.count - 1]]
    }

    static func run(_ testCase: ImageVerbCase) throws {
        let root = NSTemporaryDirectory() + "qcowkit-verb-\(UUID().uuidString)"
        let fm = FileManager.default
        defer { try? fm.removeItem(atPath: root) }
        let template = root + "/template", theirs = root + "/qemu", ours = root + "/ours"
        try fm.createDirectory(atPath: template, withIntermediateDirectories: true)
        for command in testCase.setup {
            let result = try QemuOracle.run(command, in: URL(fileURLWithPath: template), check: false)
            #expect(result.status == 0, "setup \(command.joined(separator: " ")): \(result.errorOutput)")
        }
        try fm.copyItem(atPath: template, toPath: theirs)
        try fm.copyItem(atPath: template, toPath: ours)

        let expected = try CreateOracle.run(CreateOracle.qemuImg, testCase.arguments, in: theirs)
        let actual = try CreateOracle.run(try TestTools.qcowkit(), testCase.arguments, in: ours)
        #expect(actual.status == expected.status, "exit status")
        if testCase.timedProgress {
            #expect(ImageVerbOracle.progressEnds(actual.stdout) == ImageVerbOracle.progressEnds(expected.stdout))
        } else {
            #expect(actual.stdout == expected.stdout)
        }
        #expect(actual.stderr == CreateOracle.renamed(expected.stderr))

        let theirFiles = CreateOracle.files(in: theirs)
        let ourFiles = CreateOracle.files(in: ours)
        #expect(ourFiles.keys.sorted() == theirFiles.keys.sorted())
        for (name, data) in theirFiles {
            guard let mine = ourFiles[name] else { continue }
            if testCase.contentOnly.contains(name) {
                let compare = try QemuOracle.run(["qemu-img", "compare", "-U", theirs + "/" + name, ours + "/" + name], check: false)
                #expect(compare.status == 0, "\(name): guest contents: \(compare.output) \(compare.errorOutput)")
            } else {
                #expect(mine == data, "\(name): bytes differ (\(mine.count) vs \(data.count) bytes)")
            }
        }
        for (name, data) in ourFiles where data.starts(with: [0x51, 0x46, 0x49, 0xfb]) {
            // The image alone: a case may leave its backing file missing.
            let alone = "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"\(ours)/\(name)\"},\"backing\":null}"
            let check = try QemuOracle.run(["qemu-img", "check", "-U", alone], check: false)
            var expected: Int32 = 0
            if testCase.checkAsQemu {
                let theirsAlone = alone.replacingOccurrences(of: ours + "/", with: theirs + "/")
                expected = try QemuOracle.run(["qemu-img", "check", "-U", theirsAlone], check: false).status
            }
            #expect(check.status == expected, "qemu-img check \(name): \(check.output) \(check.errorOutput)")
        }
    }
}
