// Helpers for the info interop tests: running qemu-img/qemu-io and the built
// qcowkit binary, scratch directories, and comparing outputs apart from the
// host-dependent "disk size" / "actual-size".
import Foundation
import Testing
@testable import QcowKitCommands

struct InfoProcessResult: Equatable {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum InfoTool {
    /// Runs a program found on PATH (or by absolute path) and collects its output.
    static func run(_ program: String, _ arguments: [String], in directory: String? = nil) throws -> InfoProcessResult {
        let process = Process()
        if program.hasPrefix("/") {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [program] + arguments
        }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes before waiting, so a full pipe cannot stall the child.
        let errBox = InfoDataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        process.waitUntilExit()
        return InfoProcessResult(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs a command that must succeed (fixture making).
    @discardableResult
    static func must(_ program: String, _ arguments: [String], in directory: String? = nil) throws -> String {
        let r = try run(program, arguments, in: directory)
        guard r.status == 0 else {
            throw InfoFixtureError("\(program) \(arguments.joined(separator: " ")) failed: \(r.stderr)")
        }
        return r.stdout
    }

    /// The qcowkit executable built beside the tests (`swift test` builds it).
    static let qcowkitBinary: String? = {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<4 {
            let fm = FileManager.default
            if let entries = try? fm.contentsOfDirectory(atPath: dir.path) {
                for entry in entries.sorted() where entry.hasPrefix(".build") {
                    let candidate = dir.appendingPathComponent(entry).appendingPathComponent("debug/qcowkit").path
                    if fm.isExecutableFile(atPath: candidate) { return candidate }
                }
            }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }()

    /// qcowkit's `info` run in-process: what it prints and its exit status,
    /// with messages prefixed as the binary prefixes them.
    static func qcowkitInfo(_ arguments: [String]) -> InfoProcessResult {
        do {
            let command = try QcowKit.parseAsRoot(["info"] + arguments)
            guard let info = command as? Info else { return InfoProcessResult(status: 2, stdout: "", stderr: "not info") }
            let rendered = try info.render()
            return InfoProcessResult(status: 0, stdout: rendered.text, stderr: rendered.warnings)
        } catch let failure as CommandFailure {
            return InfoProcessResult(status: failure.status, stdout: "", stderr: "qcowkit: " + failure.message + "\n")
        } catch {
            return InfoProcessResult(status: 1, stdout: "", stderr: "qcowkit: \(error)\n")
        }
    }
}

/// Carries the standard error bytes from the reading thread; the group's
/// wait orders the write before the read.
final class InfoDataBox: @unchecked Sendable {
    var data = Data()
}

struct InfoFixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A fresh directory under /tmp, removed when the test is done with it.
final class InfoScratch {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.path
        path = base + "/qcowkit-info-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Overwrites bytes of a file in place.
    func patch(_ name: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file(name)))
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        handle.write(Data(bytes))
    }
}

/// Outputs compared the way the task asks: everything but the host's
/// allocation ("disk size:" lines and "actual-size" members), and the
/// program name in messages.
enum InfoCompare {
    static func normalized(_ r: InfoProcessResult) -> InfoProcessResult {
        let out = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("disk size: ") && !$0.contains("\"actual-size\": ") }
            .joined(separator: "\n")
        let err = r.stderr.replacingOccurrences(of: "qemu-img:", with: "PROGRAM:")
            .replacingOccurrences(of: "qcowkit:", with: "PROGRAM:")
            .replacingOccurrences(of: "'qemu-img --help'", with: "'PROGRAM --help'")
            .replacingOccurrences(of: "'qcowkit --help'", with: "'PROGRAM --help'")
        return InfoProcessResult(status: r.status, stdout: out, stderr: err)
    }

    /// qemu-img info and qcowkit info (in-process) on the same arguments.
    static func expectSame(_ arguments: [String], in directory: String? = nil,
                           sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = normalized(try InfoTool.run("qemu-img", ["info"] + arguments, in: directory))
        let got = normalized(InfoTool.qcowkitInfo(arguments))
        #expect(got == expected, "info \(arguments.joined(separator: " "))", sourceLocation: sourceLocation)
    }
}
