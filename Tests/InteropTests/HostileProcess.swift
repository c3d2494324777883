// Runs the built qcowkit (and qemu-img, the oracle) on damaged images the way a
// user would, but fenced in: a timeout kills a run that hangs, and an
// address-space limit turns an unbounded allocation into a failed run, so
// that either shows up as a failed test instead of a stuck or thrashing one.
// The exit status tells the outcomes apart: 0 and 1 are answers, 137 is the
// timeout's kill, other values above 128 are a signal (a crash).
import Foundation
import TestSupport

struct HostileRun {
    var status: Int32
    var stdout: String
    var stderr: String

    /// Exited by itself with success or qemu-img's failure status.
    var answered: Bool { status == 0 || status == 1 }
    var timedOut: Bool { status == 137 }
}

enum HostileProcess {
    /// Seconds before a run counts as hung (generous: the machine is shared).
    static let timeout = 30
    /// Address space per run: room for the library's largest tables (L1 32 MiB,
    /// snapshot table and bitmap directory 64 MiB), the runtime, the convert
    /// workers' stacks and malloc arenas; far below an unbounded allocation.
    /// (A normal run of qcowkit or qemu-img fits in 128 MiB.)
    static let addressSpaceKiB = 512 << 10

    static func qcowkit(_ arguments: [String], in directory: String) throws -> HostileRun {
        try run(["qcowkit"] + arguments, in: directory)
    }

    static func qemuImg(_ arguments: [String], in directory: String) throws -> HostileRun {
        try run(["qemu-img"] + arguments, in: directory)
    }

    /// Runs `command` in `directory` under the limits; output goes through
    /// files, so a chatty child cannot block on a full pipe.
    static func run(_ command: [String], in directory: String) throws -> HostileRun {
        let id = UUID().uuidString
        let out = directory + "/.stdout-\(id)", err = directory + "/.stderr-\(id)"
        defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: err) }
        for path in [out, err] where !FileManager.default.createFile(atPath: path, contents: nil) {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        let (executable, arguments) = try TestTools.resolve(command)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "ulimit -v \(addressSpaceKiB) && exec timeout -s KILL \(timeout) \"$@\"", "sh", executable]
            + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"   // a crash exits at once
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        try process.run()
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        func text(_ path: String) -> String {
            String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
        }
        return HostileRun(status: status, stdout: text(out), stderr: text(err))
    }
}
