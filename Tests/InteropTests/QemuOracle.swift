// Running QEMU's tools (fixture makers and reference) and the built qcowkit
// binary, and scratch directories for their files.
import Foundation
import TestSupport

struct ProcessResult {
    var status: Int32
    var stdout: Data
    var stderr: Data
    var output: String { String(decoding: stdout, as: UTF8.self) }
    var errorOutput: String { String(decoding: stderr, as: UTF8.self) }
}

struct ProcessFailed: Error, CustomStringConvertible {
    var command: [String]
    var result: ProcessResult
    var description: String {
        "\(command.joined(separator: " ")) exited \(result.status): \(result.errorOutput)"
    }
}

enum QemuOracle {
    /// Runs `arguments[0]` (looked up in PATH unless it is a path) and
    /// collects its output; `input`, if any, is its standard input.
    @discardableResult
    static func run(_ arguments: [String], in directory: URL? = nil, check: Bool = true,
                    input: String? = nil) throws -> ProcessResult {
        let process = Process()
        let (executable, resolved) = try TestTools.resolve(arguments)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = resolved
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try process.run()
        if let input {
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try inPipe.fileHandleForWriting.close()
        }
        // Read both pipes fully before waiting, so a chatty child cannot block.
        final class Collected: @unchecked Sendable { var data = Data() }
        let stderrData = Collected()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            stderrData.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        let result = ProcessResult(status: process.terminationStatus, stdout: stdoutData, stderr: stderrData.data)
        if check && result.status != 0 { throw ProcessFailed(command: arguments, result: result) }
        return result
    }

    @discardableResult
    static func qemuImg(_ arguments: String..., in directory: URL? = nil, check: Bool = true) throws -> ProcessResult {
        try run(["qemu-img"] + arguments, in: directory, check: check)
    }

    /// Runs qemu-io with one -c command per element.
    static func qemuIO(_ image: String, _ commands: [String], format: String = "qcow2", in directory: URL? = nil) throws {
        var arguments = ["qemu-io", "-f", format]
        for command in commands { arguments += ["-c", command] }
        arguments.append(image)
        let result = try run(arguments, in: directory)
        // qemu-io reports failed commands on stdout/stderr but exits 0.
        let text = result.output + result.errorOutput
        if text.contains("error") || text.contains("failed") {
            throw ProcessFailed(command: arguments, result: result)
        }
    }

    /// Runs the built qcowkit binary (never throws for a non-zero exit).
    static func qcowkit(_ verb: String, in directory: URL, arguments: [String]) throws -> ProcessResult {
        try run([try TestTools.qcowkit(), verb] + arguments, in: directory, check: false)
    }
}

/// A fresh directory under /tmp, removed when the value is released.
final class ScratchDirectory {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("qcowkit-read-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}
