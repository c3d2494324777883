// The differential harness of persistent dirty bitmaps: a case starts from
// an image made by qemu-img (and set up by QEMU's tools), copied twice; the
// same steps then run on both copies, QEMU 7.2's tools on one (qemu-io,
// qemu-img bitmap, resize, check) and qcowkit on the other (io, bitmap,
// resize, check). Each step's exit status and standard error must agree (program
// name and QEMU's random node names aside); at the end both images must be
// byte-identical, `qemu-img info` must show the same bitmaps and flags,
// `qemu-img check` must pass ours (unless the case leaks on purpose), and
// every consistent bitmap's bits, read through qemu-nbd -B and libnbd's
// nbdinfo (tools we did not write), must be equal.

import Foundation
import Testing
import TestSupport

struct BitmapStep: Sendable {
    enum Tool: Sendable { case io, bitmap, resize, check }
    var tool: Tool
    var arguments: [String]

    /// qemu-io -c commands (status and stderr compared; stdout has timings).
    static func io(_ commands: String...) -> BitmapStep {
        BitmapStep(tool: .io, arguments: commands.flatMap { ["-c", $0] })
    }
    /// qemu-img bitmap with these arguments before the image and bitmap name.
    static func bitmap(_ options: String..., name: String) -> BitmapStep {
        BitmapStep(tool: .bitmap, arguments: options + ["IMAGE", name])
    }
    static func resize(_ options: String...) -> BitmapStep {
        BitmapStep(tool: .resize, arguments: options)
    }
    static func check(_ options: String...) -> BitmapStep {
        BitmapStep(tool: .check, arguments: options)
    }
}

struct BitmapCase: CustomTestStringConvertible, Sendable {
    var name: String
    var createOptions: String
    var size: String
    /// Commands run on the image ("IMAGE") before it is copied.
    var setup: [[String]] = []
    var steps: [BitmapStep]
    /// The image leaks clusters on purpose (a killed writer).
    var leaks = false
    var testDescription: String { name }
}

enum BitmapOracle {
    static func run(_ testCase: BitmapCase) throws {
        let root = NSTemporaryDirectory() + "qcowkit-bitmap-\(UUID().uuidString)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: root) }
        let dir = URL(fileURLWithPath: root)
        let theirs = root + "/theirs.qcow2", ours = root + "/ours.qcow2"
        var create = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if !testCase.createOptions.isEmpty { create += ["-o", testCase.createOptions] }
        try QemuOracle.run(create + [theirs, testCase.size], in: dir)
        for command in testCase.setup {
            _ = try QemuOracle.run(command.map { $0.replacingOccurrences(of: "IMAGE", with: theirs) }, in: dir, check: false)
        }
        try fm.copyItem(atPath: theirs, toPath: ours)

        for (index, step) in testCase.steps.enumerated() {
            let expected = try QemuOracle.run(command(step, image: theirs, qemu: true), in: dir, check: false)
            let actual = try QemuOracle.run(command(step, image: ours, qemu: false), in: dir, check: false)
            let label = "step \(index): \(step.arguments.joined(separator: " "))"
            #expect(actual.status == expected.status, "\(label): exit status")
            #expect(normalized(actual.errorOutput, image: ours) == normalized(expected.errorOutput, image: theirs),
                    "\(label): standard error")
            if step.tool != .io {
                #expect(actual.output == expected.output.replacingOccurrences(of: theirs, with: ours), "\(label): output")
            }
        }

        let theirBytes = try Data(contentsOf: URL(fileURLWithPath: theirs))
        let ourBytes = try Data(contentsOf: URL(fileURLWithPath: ours))
        // Compared first: the expectation would print both images in full.
        let identical = ourBytes == theirBytes
        #expect(identical, "images differ (\(ourBytes.count) vs \(theirBytes.count) bytes)")
        let theirInfo = try QemuOracle.run(["qemu-img", "info", "--output=json", theirs], check: false)
        let ourInfo = try QemuOracle.run(["qemu-img", "info", "--output=json", ours], check: false)
        #expect(try formatSpecific(ourInfo.output) == formatSpecific(theirInfo.output), "qemu-img info")
        if !testCase.leaks {
            let check = try QemuOracle.run(["qemu-img", "check", ours], check: false)
            #expect(check.status == 0, "qemu-img check: \(check.output) \(check.errorOutput)")
        }
        for bitmap in try consistentBitmaps(theirInfo.output) {
            #expect(try dirtyMap(ours, bitmap) == dirtyMap(theirs, bitmap), "bits of \(bitmap)")
        }
    }

    private static func command(_ step: BitmapStep, image: String, qemu: Bool) throws -> [String] {
        let arguments = step.arguments.map { $0 == "IMAGE" ? image : $0 }
        switch step.tool {
        case .io: return (qemu ? ["qemu-io"] : ["qcowkit", "io"]) + ["-f", "qcow2"] + arguments + [image]
        case .bitmap: return (qemu ? ["qemu-img"] : ["qcowkit"]) + ["bitmap"] + arguments
        case .resize: return (qemu ? ["qemu-img"] : ["qcowkit"]) + ["resize", image] + arguments
        case .check: return (qemu ? ["qemu-img"] : ["qcowkit"]) + ["check"] + arguments + [image]
        }
    }

    /// Standard error without the program's name, the image's path and the
    /// node names QEMU makes up ("#block123").
    static func normalized(_ text: String, image: String) -> String {
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var l = String(line)
            for program in ["qemu-img: ", "qemu-io: ", "qcowkit: "] where l.hasPrefix(program) {
                l = "PROGRAM: " + l.dropFirst(program.count)
            }
            l = l.replacingOccurrences(of: image, with: "IMAGE")
            // qcowkit check names itself in the stale-bitmaps hint.
            l = l.replacingOccurrences(of: "run 'qcowkit check -r'", with: "run 'qemu-img check -r'")
            if let range = l.range(of: "#block[0-9]+", options: .regularExpression) { l.replaceSubrange(range, with: "#block") }
            lines.append(l)
        }
        return lines.joined(separator: "\n")
    }

    /// The qcow2-specific part of qemu-img info (bitmaps, flags, features).
    static func formatSpecific(_ json: String) throws -> String {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let specific = object?["format-specific"] ?? [:]
        let data = try JSONSerialization.data(withJSONObject: specific, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Bitmaps not marked in use (qemu-nbd refuses to export the others).
    static func consistentBitmaps(_ json: String) throws -> [String] {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let specific = (object?["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        let bitmaps = specific?["bitmaps"] as? [[String: Any]] ?? []
        return bitmaps.compactMap { bitmap in
            let flags = bitmap["flags"] as? [String] ?? []
            return flags.contains("in-use") ? nil : bitmap["name"] as? String
        }
    }

    /// The dirty extents of `bitmap`, through qemu-nbd -B and nbdinfo --map.
    static func dirtyMap(_ image: String, _ bitmap: String) throws -> String {
        _ = try TestTools.program("nbdinfo", package: "libnbd-bin")
        _ = try TestTools.program("qemu-nbd", package: "qemu-utils")
        let result = try QemuOracle.run(["nbdinfo", "--map=qemu:dirty-bitmap:\(bitmap)", "--",
                                         "[", "qemu-nbd", "-r", "-f", "qcow2", "-B", bitmap, image, "]"], check: false)
        #expect(result.status == 0, "nbdinfo \(bitmap): \(result.errorOutput)")
        return result.output
    }
}
