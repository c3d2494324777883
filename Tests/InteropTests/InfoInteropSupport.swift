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
    /// Runs a program found on PATH (or by its path) and collects its output.
    static func run(_ program: String, _ arguments: [String], in directory: String? = nil) throws -> InfoProcessResult {
        let result = try QemuOracle.run([program] + arguments, in: directory.map { URL(fileURLWithPath: $0) },
                                        check: false)
        return InfoProcessResult(status: result.status, stdout: result.output, stderr: result.errorOutput)
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

    /// qcowkit's `info` run in-process: what it prints and its exit status,
    /// with messages prefixed as the binary prefixes them.
    static func qcowkitInfo(_ arguments: [String]) -> InfoProcessResult {
        do {
            let rendered = try Info.parse(arguments).render()
            return InfoProcessResult(status: 0, stdout: rendered.text, stderr: rendered.warnings)
        } catch let failure as CommandFailure {
            return InfoProcessResult(status: failure.status, stdout: "", stderr: "qcowkit: " + failure.message + "\n")
        } catch {
            return InfoProcessResult(status: 1, stdout: "", stderr: "qcowkit: \(error)\n")
        }
    }
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
