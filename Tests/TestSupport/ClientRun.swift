// A client program's run, for tests that compare what clients see of
// QEMU's servers and of ours.
import Foundation

/// A client's exit status and output.
public struct ClientRun: Equatable, CustomStringConvertible {
    public var status: Int32
    public var output: String
    public init(status: Int32, output: String) {
        self.status = status
        self.output = output
    }
    public var description: String { "exit \(status): \(output)" }
}

/// Runs a client program to the end: its exit status and its output and
/// errors together.
public func runClient(_ command: [String], environment: [String: String] = [:]) throws -> ClientRun {
    let (executable, arguments) = try TestTools.resolve(command)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return ClientRun(status: process.terminationStatus, output: text)
}

