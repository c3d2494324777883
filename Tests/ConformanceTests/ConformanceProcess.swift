// Running the conformance scripts: where the package, its scripts and the
// built qcowkit are, and a child process with a deadline (the scripts have
// their own per-reply timeouts; this one only keeps a broken script from
// hanging `swift test`).
import Foundation
import TestSupport

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
    static var packageRoot: URL { TestTools.packageRoot }

    static var harnessScript: String { packageRoot.appendingPathComponent("Scripts/iotest-191.sh").path }

    /// One word of a shell word list: the harness evaluates its tool
    /// variables as shell words, so paths are quoted.
    static func shellQuoted(_ word: String) -> String {
        "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func run(_ arguments: [String], environment extra: [String: String] = [:],
                    timeout: TimeInterval) throws -> ScriptRun {
        let process = Process()
        let (executable, resolved) = try TestTools.resolve(arguments)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = resolved
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
