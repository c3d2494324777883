// Running qemu-io and `qcowkit io` side by side: each in its own directory
// holding an identical copy of the images, so that file names in messages
// agree, with the figures that depend on timing normalised away.
import Foundation
import Testing
import TestSupport

struct IOProcessResult: Equatable {
    var status: Int32
    var output: String
    var error: String
}

enum IOProcess {
    /// Runs `arguments[0]` (through PATH unless it is a path) in `directory`.
    static func run(_ arguments: [String], in directory: URL, input: String? = nil) throws -> IOProcessResult {
        let result = try QemuOracle.run(arguments, in: directory, check: false, input: input)
        return IOProcessResult(status: result.status, output: result.output, error: result.errorOutput)
    }
}

/// Two scratch directories, "qemu" and "ours", with the same files, made
/// in a third ("stage") and copied alike.
final class IOTwinDirectories {
    let root: URL
    let stage: URL
    let qemu: URL
    let ours: URL

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("qcowkit-io-interop-\(UUID().uuidString)")
        stage = root.appendingPathComponent("stage")
        qemu = root.appendingPathComponent("qemu")
        ours = root.appendingPathComponent("ours")
        for directory in [stage, qemu, ours] {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        }
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    /// Runs commands (qemu-img, qemu-io) in the stage directory to make
    /// fixtures, then copies them to both sides.
    func prepare(_ commands: [[String]]) throws {
        for command in commands {
            let result = try IOProcess.run(command, in: stage)
            guard result.status == 0 else {
                throw IOInteropError("fixture command \(command) failed: \(result.error)")
            }
        }
        try syncCopies()
    }

    /// Copies the staged files to both sides, holes and all.
    func syncCopies() throws {
        let fm = FileManager.default
        for directory in [qemu, ours] {
            for name in try fm.contentsOfDirectory(atPath: directory.path) {
                try fm.removeItem(at: directory.appendingPathComponent(name))
            }
            for name in try fm.contentsOfDirectory(atPath: stage.path) {
                let copy = try IOProcess.run(["cp", "--sparse=always", stage.appendingPathComponent(name).path,
                                              directory.appendingPathComponent(name).path], in: root)
                guard copy.status == 0 else { throw IOInteropError("cp failed: \(copy.error)") }
            }
        }
    }

    /// `qemu-img map --output=json` of a file on both sides: the data/hole
    /// layout the writes left, not just the content.
    func maps(_ name: String, format: String) throws -> (qemu: String, ours: String) {
        let arguments = ["qemu-img", "map", "--output=json", "-f", format, name]
        return (try IOProcess.run(arguments, in: qemu).output, try IOProcess.run(arguments, in: ours).output)
    }

    /// Whether `qemu-img compare` finds the two sides' images identical in content.
    func sameContent(_ name: String) throws -> Bool {
        try IOProcess.run(["qemu-img", "compare", "-q", qemu.appendingPathComponent(name).path,
                           ours.appendingPathComponent(name).path], in: root).status == 0
    }

    /// qemu-io with `arguments` in one directory, `qcowkit io` in the other.
    func run(_ arguments: [String], input: String? = nil) throws -> (qemu: IOProcessResult, ours: IOProcessResult) {
        let qcowkit = try TestTools.qcowkit()
        let theirs = try IOProcess.run(["qemu-io"] + arguments, in: qemu, input: input)
        let ours = try IOProcess.run([qcowkit, "io"] + arguments, in: ours, input: input)
        return (IONormalised.result(theirs, program: "qemu-io"), IONormalised.result(ours, program: "qcowkit"))
    }

    func bytes(_ name: String, in directory: URL) throws -> Data {
        try Data(contentsOf: directory.appendingPathComponent(name))
    }
}

struct IOInteropError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What may differ between two runs of the same commands: elapsed times and
/// rates, and the program's name in diagnostics.
enum IONormalised {
    static func result(_ result: IOProcessResult, program: String) -> IOProcessResult {
        IOProcessResult(status: result.status, output: text(result.output, program: program),
                        error: text(result.error, program: program))
    }

    static func text(_ text: String, program: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var line = String(line)
            if line.hasPrefix(program + ": ") { line = "PROGRAM: " + line.dropFirst(program.count + 2) }
            if let ops = line.range(of: " ops; "), let comma = line[..<ops.lowerBound].lastIndex(of: ",") {
                // "64 KiB, 1 ops; 00.00 sec (... and ... ops/sec)"
                return String(line[..<comma]) + ", " + line[line.index(comma, offsetBy: 2)..<ops.lowerBound] + " ops; TIME"
            }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            if fields.count == 5, fields[2].contains(":"), Int(fields[0]) != nil, Int(fields[1]) != nil {
                return "\(fields[0]),\(fields[1]),TIME"   // -C: bytes,ops,time,bytes/sec,ops/sec
            }
            return line
        }.joined(separator: "\n")
    }
}
