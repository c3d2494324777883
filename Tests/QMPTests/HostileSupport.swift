// For the hostile-input and job tests: the same QMP service command line run
// two ways, QEMU 7.2's qemu-storage-daemon as a process (the oracle) and
// QcowKit's service in-process, both reached through a unix socket; a raw
// byte client for byte-for-byte comparisons; scratch directories; qemu-img.
import Foundation
import Testing
import QemuJSON
@testable import QMP
import TestSupport

struct HostileFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A QMP service listening on `socketPath`, QEMU's or ours.
final class ComparedService: @unchecked Sendable {
    enum Kind: String, CaseIterable, Sendable { case qemu, qcowkit }

    let kind: Kind
    let socketPath: String
    /// Anything that must live as long as the service (its scratch directory).
    var keepAlive: AnyObject?
    private var process: Process?
    private var service: QMPService?
    private let exited = DispatchSemaphore(value: 0)

    /// `blockdevs`: --blockdev arguments, in order; `extraArguments` follow
    /// them (--object, --nbd-server, --export).
    init(_ kind: Kind, blockdevs: [String] = [], extraArguments: [String] = [], socketPath: String) throws {
        self.kind = kind
        self.socketPath = socketPath
        var arguments: [String] = []
        for blockdev in blockdevs { arguments += ["--blockdev", blockdev] }
        arguments += extraArguments
        arguments += ["--chardev", "socket,id=qmp0,path=\(socketPath),server=on,wait=off", "--monitor", "qmp0"]
        switch kind {
        case .qemu:
            try Self.requireQEMU()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["qemu-storage-daemon"] + arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            process.terminationHandler = { [exited] _ in exited.signal() }
            try process.run()
            self.process = process
        case .qcowkit:
            let service = try QMPService(version: QMPVersion(package: "test"))
            try service.configure(try ServeCommandLine.parse(arguments))
            self.service = service
            // Handed to the serving thread, which owns it from here on.
            nonisolated(unsafe) let served = service
            Thread { [exited] in
                served.serve()
                exited.signal()
            }.start()
        }
    }

    /// QEMU's program, or a clear failure naming the package.
    static func requireQEMU() throws {
        _ = try TestTools.program("qemu-storage-daemon", package: "qemu-system-common")
    }

    /// A raw connection once the service listens (QEMU binds before it
    /// listens, so the socket file may refuse for a moment).
    func connectRaw(seconds: Double = 10) throws -> RawQMPClient {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            do {
                return try RawQMPClient(path: socketPath)
            } catch {
                guard Date() < deadline else { throw HostileFailure("\(kind): no listener at \(socketPath): \(error)") }
                usleep(10_000)
            }
        }
    }

    /// A message client, greeting read and capabilities negotiated.
    func connect(seconds: Double = 10) throws -> UnixClient {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            do {
                let client = try UnixClient(path: socketPath)
                _ = try client.next()
                _ = try client.execute(#"{"execute":"qmp_capabilities"}"#)
                return client
            } catch let error as UnixClient.Failure where error.description.hasPrefix("connect") {
                guard Date() < deadline else { throw HostileFailure("\(kind): no listener at \(socketPath): \(error)") }
                usleep(10_000)
            }
        }
    }

    /// Stops the service (QEMU: killed; ours: the shutdown quit runs) and
    /// waits for it.
    func stop() {
        guard process != nil || service != nil else { return }
        // SIGKILL: a test runner may block SIGTERM, and children inherit
        // the mask (QEMU is only the oracle; how it ends does not matter).
        if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) }
        if let service {
            // Runs on the serving thread, which owns the service.
            nonisolated(unsafe) let served = service
            service.loop.handle.invoke { served.shutDown(reason: .hostQMPQuit) }
        }
        if exited.wait(timeout: .now() + 30) == .timedOut { Issue.record("\(kind) did not stop within 30 s") }
        process = nil
        service = nil
    }

    deinit { stop() }
}

/// A QMP connection that keeps the bytes as they came, for comparisons.
final class RawQMPClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(path: String) throws {
        do { fd = try UnixSocketConnect.connect(path: path) } catch { throw HostileFailure(error.description) }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw HostileFailure("send: errno \(errno)") }
            offset += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads until the bytes received end with `suffix`; returns them all
    /// (and forgets them).
    func read(through suffix: [UInt8], seconds: Double = 30) throws -> [UInt8] {
        let deadline = Date().addingTimeInterval(seconds)
        while !(buffer.count >= suffix.count && Array(buffer.suffix(suffix.count)) == suffix) {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else {
                throw HostileFailure("no \(String(decoding: suffix, as: UTF8.self)) within \(seconds) s; got \(String(decoding: buffer.suffix(300), as: UTF8.self))")
            }
            try fill(milliseconds: Int32(min(left, 1) * 1000))
        }
        defer { buffer = [] }
        return buffer
    }

    /// Reads what arrives within `milliseconds` (at least one poll).
    func fill(milliseconds: Int32) throws {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, milliseconds) > 0 else { return }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw HostileFailure("connection closed") }
        buffer += chunk[0..<n]
    }

    /// The greeting, then qmp_capabilities' reply.
    func negotiate() throws {
        _ = try read(through: Array("\r\n".utf8))
        try send(#"{"execute":"qmp_capabilities"}"#)
        _ = try read(through: Array(#"{"return": {}}"#.utf8) + [13, 10])
    }
}

/// A scratch directory removed at deinit.
final class HostileScratch {
    let path: String

    init(_ label: String) throws {
        path = NSTemporaryDirectory() + "qcowkit-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }

    /// Runs a QEMU tool (qemu-img, qemu-io) in this directory; returns its
    /// standard output, or throws with its standard error.
    @discardableResult
    func run(_ arguments: String...) throws -> String {
        let process = Process()
        let (executable, resolved) = try TestTools.resolve(arguments)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = resolved
        process.currentDirectoryURL = URL(fileURLWithPath: path)
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HostileFailure("\(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(String(decoding: errorData, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
