// `qcowkit serve` as a process: the built binary with QMP on its stdin and
// stdout, stopped by SIGTERM/SIGINT or quit; its exit status and messages,
// and the images it leaves behind (checked by qemu-img).
import Foundation
import Testing
import QemuJSON
import TestSupport

@Suite("qcowkit serve, as a process")
struct ServeProcessTests {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// A running `qcowkit serve` with pipes on stdin, stdout and stderr.
    final class Server: @unchecked Sendable {
        let process = Process()
        private let input = Pipe(), output = Pipe(), errors = Pipe()
        private let lock = NSLock()
        private var received: [UInt8] = []
        private var parser = JSONMessageParser()
        private var messages: [JSONValue] = []
        private var ended = false

        init(_ arguments: [String], in directory: String) throws {
            let binary = try TestTools.qcowkit()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["serve"] + arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            process.standardInput = input
            process.standardOutput = output
            process.standardError = errors
            output.fileHandleForReading.readabilityHandler = { [weak self] handle in
                let data = handle.availableData
                guard let self else { return }
                self.lock.withLock {
                    if data.isEmpty { self.ended = true; return }
                    for outcome in self.parser.feed([UInt8](data)) {
                        if case let .value(value) = outcome { self.messages.append(value) }
                    }
                }
            }
            try process.run()
        }

        func send(_ text: String) { input.fileHandleForWriting.write(Data((text + "\n").utf8)) }

        /// The next message within `seconds`, or nil at the end of output.
        func next(seconds: Double = 30) throws -> JSONValue? {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                let (message, isOver) = lock.withLock { () -> (JSONValue?, Bool) in
                    if !messages.isEmpty { return (messages.removeFirst(), false) }
                    return (nil, ended)
                }
                if let message { return message }
                if isOver { return nil }
                usleep(10_000)
            }
            throw Failure(description: "no message within \(seconds) s")
        }

        /// Sends a command and returns its reply, skipping events.
        func execute(_ text: String) throws -> JSONValue {
            send(text)
            while let message = try next() {
                if message["event"] == nil { return message }
            }
            throw Failure(description: "output ended before the reply to \(text)")
        }

        /// Waits for the exit; returns status and standard error.
        func finish() -> (status: Int32, stderr: String) {
            process.waitUntilExit()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return (process.terminationStatus, text)
        }
    }

    final class Images {
        let directory = NSTemporaryDirectory() + "qcowkit-serve-\(UUID().uuidString.prefix(8))"
        var base: String { directory + "/base.qcow2" }
        var top: String { directory + "/top.qcow2" }

        init() throws {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Images.run("qemu-img", "create", "-q", "-f", "qcow2", base, "64M")
            try Images.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top, "64M")
            try Images.run("qemu-io", "-c", "write -P 0x5a 0 8M", top)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        var blockdevs: [String] {
            ["--blockdev", "driver=qcow2,file.driver=file,file.filename=\(base),node-name=base",
             "--blockdev", "driver=qcow2,file.driver=file,file.filename=\(top),node-name=top,backing=base"]
        }

        static func run(_ arguments: String...) throws {
            let process = Process()
            let (executable, resolved) = try TestTools.resolve(arguments)
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = resolved
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw Failure(description: "\(arguments): \(process.terminationStatus)") }
        }
    }

    @Test func sigtermDuringACommitShutsDownCleanly() throws {
        let images = try Images()
        let server = try Server(["-qmp", "stdio"] + images.blockdevs, in: images.directory)
        #expect(try server.next()?["QMP"] != nil)
        #expect(try server.execute(#"{"execute":"qmp_capabilities"}"#) == .object([("return", .object([]))]))
        // An active commit slowed to 1 MiB/s: still running when the signal comes.
        #expect(try server.execute(#"{"execute":"block-commit","arguments":{"job-id":"c","device":"top","speed":1048576}}"#)["return"] != nil)
        kill(server.process.processIdentifier, SIGTERM)
        var events: [JSONValue] = []
        while let message = try server.next() { events.append(message) }
        let shutdown = events.first { $0["event"] == .string("SHUTDOWN") }
        #expect(shutdown?["data"] == .object([("guest", .bool(false)), ("reason", .string("host-signal"))]))
        #expect(events.last?["data"]?["status"] == .string("null"))
        let (status, stderr) = server.finish()
        #expect(status == 0)
        #expect(stderr.contains("qcowkit: terminating on signal 15"))
        try Images.run("qemu-img", "check", "-q", images.base)
        try Images.run("qemu-img", "check", "-q", images.top)
    }

    @Test func sigintOnASocketRemovesTheSocketFile() throws {
        let images = try Images()
        let socket = images.directory + "/qmp.sock"
        let server = try Server(["-qmp", "unix:\(socket),server=on,wait=off", "-nodefaults"] + images.blockdevs,
                                in: images.directory)
        var waited = 0
        while !FileManager.default.fileExists(atPath: socket) && waited < 3000 { usleep(10_000); waited += 10 }
        #expect(FileManager.default.fileExists(atPath: socket))
        kill(server.process.processIdentifier, SIGINT)
        let (status, _) = server.finish()
        #expect(status == 0)
        #expect(!FileManager.default.fileExists(atPath: socket))
    }

    @Test func quitOnStdioThenExit() throws {
        let images = try Images()
        let server = try Server(["-qmp-pretty", "stdio"] + images.blockdevs, in: images.directory)
        _ = try server.next()
        _ = try server.execute(#"{"execute":"qmp_capabilities"}"#)
        server.send(#"{"execute":"quit"}"#)
        #expect(try server.next() == .object([("return", .object([]))]))
        #expect(try server.next()?["data"]?["reason"] == .string("host-qmp-quit"))
        #expect(try server.next() == nil)
        #expect(server.finish().status == 0)
    }

    /// -pidfile as QEMU 7.2 writes it: "PID\n", mode 0600, locked while the
    /// service runs (a second daemon, ours or qemu-storage-daemon 7.2, is
    /// refused with the same words), removed at exit; an uncreatable path
    /// gets qemu-storage-daemon's message.
    @Test func pidFileAsQemuWritesIt() throws {
        let images = try Images()
        let pidFile = images.directory + "/serve.pid"
        let server = try Server(["-monitor", "none", "-S", "-qmp", "stdio", "-pidfile", pidFile] + images.blockdevs,
                                in: images.directory)
        // A failed step must not leave the service running.
        defer { if server.process.isRunning { kill(server.process.processIdentifier, SIGKILL) } }
        #expect(try server.next()?["QMP"] != nil)
        #expect(try String(contentsOfFile: pidFile, encoding: .utf8) == "\(server.process.processIdentifier)\n")
        let mode = try FileManager.default.attributesOfItem(atPath: pidFile)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let second = try Server(["--pidfile", pidFile], in: images.directory)
        #expect(second.finish() == (1, "qcowkit: cannot create PID file: Cannot lock pid file: Resource temporarily unavailable\n"))
        let qsd = try runClient([try TestTools.program("qemu-storage-daemon", package: "qemu-system-common"),
                                 "--pidfile", pidFile])
        #expect(qsd == ClientRun(status: 1,
            output: "qemu-storage-daemon: cannot create PID file: Cannot lock pid file: Resource temporarily unavailable\n"))
        #expect(try String(contentsOfFile: pidFile, encoding: .utf8) == "\(server.process.processIdentifier)\n")

        kill(server.process.processIdentifier, SIGTERM)
        #expect(server.finish().status == 0)
        #expect(!FileManager.default.fileExists(atPath: pidFile))

        let missing = images.directory + "/no/such/dir/pid"
        let uncreatable = try Server(["--pidfile", missing], in: images.directory)
        #expect(uncreatable.finish()
            == (1, "qcowkit: cannot create PID file: Could not create '\(missing)': No such file or directory\n"))
        #expect(try runClient(["qemu-storage-daemon", "--pidfile", missing]) == ClientRun(status: 1,
            output: "qemu-storage-daemon: cannot create PID file: Could not create '\(missing)': No such file or directory\n"))
    }

    @Test func setupErrorsNameTheOptionAndLeaveNothing() throws {
        let images = try Images()
        let socket = images.directory + "/qmp.sock"
        let server = try Server(["-qmp", "unix:\(socket),server=on,wait=off",
                                 "-blockdev", "driver=qcow2,node-name=x,file.driver=file,file.filename=/nonexistent.qcow2"],
                                in: images.directory)
        let (status, stderr) = server.finish()
        #expect(status == 1)
        #expect(stderr == "qcowkit: -blockdev driver=qcow2,node-name=x,file.driver=file,file.filename=/nonexistent.qcow2: Could not open '/nonexistent.qcow2': No such file or directory\n")
        #expect(!FileManager.default.fileExists(atPath: socket))

        let bad = try Server(["--bogus"], in: images.directory)
        #expect(bad.finish() == (1, "qcowkit: --bogus: invalid option\n"))
        let help = try Server(["--help"], in: images.directory)
        #expect(help.finish().status == 0)
    }
}
