// Running the conformance scripts: where the package, its scripts and the
// built qcowkit are, and a child process with a deadline (the scripts have
// their own per-reply timeouts; this one only keeps a broken script from
// hanging `swift test`).
import Foundation

struct ScriptRun {
    var status: Int32
    /// stdout and stderr, interleaved as written.
    var output: String
    var timedOut: Bool
}

struct ConformanceSetupError: Error, CustomStringConvertible {
    var description: String
}

enum ConformanceProcess {
    /// The package root, found from this source file.
    static let packageRoot: URL = {
        var root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<2 { root = root.deletingLastPathComponent() }
        return root
    }()

    static var harnessScript: String { packageRoot.appendingPathComponent("Scripts/iotest-191.sh").path }

    /// The qcowkit binary `swift test` built: beside the test bundle, or in
    /// the package's .build/debug.
    static func qcowkitPath() throws -> String {
        var candidates: [URL] = []
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(dir.appendingPathComponent("qcowkit"))
            dir = dir.deletingLastPathComponent()
        }
        candidates.append(packageRoot.appendingPathComponent(".build/debug/qcowkit"))
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw ConformanceSetupError(description: "the qcowkit binary was not built (looked in \(candidates.map(\.path)))")
        }
        return found.path
    }

    /// A program looked up in PATH, or a clear error naming the package that
    /// provides it.
    static func requireProgram(_ name: String, package: String) throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let found = path.split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/\(name)")
        }
        if !found { throw ConformanceSetupError(description: "\(name) not found in PATH: install \(package)") }
    }

    /// One word of a shell word list: the harness evaluates its tool
    /// variables as shell words, so paths are quoted.
    static func shellQuoted(_ word: String) -> String {
        "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func run(_ arguments: [String], environment extra: [String: String] = [:],
                    timeout: TimeInterval) throws -> ScriptRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment.merge(extra) { $1 }
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()

        final class Box: @unchecked Sendable { var data = Data() }
        let output = Box()
        let drained = DispatchSemaphore(value: 0)
        let reader = pipe.fileHandleForReading
        DispatchQueue.global().async {
            output.data = reader.readDataToEndOfFile()
            drained.signal()
        }
        var timedOut = false
        if exited.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            // The harness kills the service it started on its way out.
            process.terminate()
            if exited.wait(timeout: .now() + 5) == .timedOut { kill(process.processIdentifier, SIGKILL) }
            exited.wait()
        }
        // A grandchild still holding the pipe must not block the test forever.
        _ = drained.wait(timeout: .now() + 10)
        return ScriptRun(status: process.terminationStatus,
                         output: String(decoding: output.data, as: UTF8.self), timedOut: timedOut)
    }
}
