import Foundation
import Testing
import QemuJSON
@testable import QMP

/// The service on its own thread, serving a unix socket as `qcowkit serve`
/// does: several clients at once, mode 0600, the socket file removed on quit,
/// a client that vanishes mid-command not disturbing the others.
@Suite struct SocketServiceTests {
    final class RunningService: @unchecked Sendable {
        let service: QMPService
        let path: String
        let directory: String
        private let done = DispatchSemaphore(value: 0)
        private(set) var reason: QMPService.ShutdownReason?

        init() throws {
            directory = NSTemporaryDirectory() + "qcowkit-qmp-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            path = directory + "/qmp.sock"
            service = try QMPService(version: QMPVersion(package: "test"))
            try service.addSocketMonitor(path: path, pretty: false)
            let thread = Thread { [self] in
                reason = service.serve()
                done.signal()
            }
            thread.start()
        }

        func waitForExit(seconds: Double = 30) -> Bool {
            done.wait(timeout: .now() + seconds) == .success
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    @Test func twoClientsAtOnceThenQuit() throws {
        let running = try RunningService()
        var attributes = stat()
        #expect(stat(running.path, &attributes) == 0)
        #expect(attributes.st_mode & 0o777 == 0o600)

        let a = try UnixClient(path: running.path)
        let b = try UnixClient(path: running.path)
        #expect(try a.next()["QMP"] != nil)
        #expect(try b.next()["QMP"] != nil)
        #expect(try a.execute(#"{"execute":"qmp_capabilities"}"#) == .object([("return", .object([]))]))
        // b has not negotiated: refused, and it gets no events.
        #expect(try b.execute(#"{"execute":"query-jobs"}"#)["error"]?["class"] == .string("CommandNotFound"))
        #expect(try b.execute(#"{"execute":"qmp_capabilities"}"#) == .object([("return", .object([]))]))
        #expect(try b.execute(#"{"execute":"query-jobs","id":7}"#) == .object([("return", .array([])), ("id", .int(7))]))

        // A client that sends a burst and leaves without reading.
        do {
            let c = try UnixClient(path: running.path)
            try c.send(String(repeating: #"{"execute":"qmp_capabilities"}{"execute":"query-commands"}"#, count: 500))
        }
        #expect(try a.execute(#"{"execute":"query-version"}"#)["return"]?["package"] == .string("test"))

        // quit: a's reply, then SHUTDOWN to both, then the connections close.
        try a.send(#"{"execute":"quit","id":"bye"}"#)
        #expect(try a.next() == .object([("return", .object([])), ("id", .string("bye"))]))
        let shutdown = try a.next()
        #expect(shutdown["event"] == .string("SHUTDOWN"))
        #expect(shutdown["data"] == .object([("guest", .bool(false)), ("reason", .string("host-qmp-quit"))]))
        #expect(try b.next()["event"] == .string("SHUTDOWN"))
        #expect(a.isClosedByPeer())
        #expect(b.isClosedByPeer())
        #expect(running.waitForExit())
        #expect(running.reason == .hostQMPQuit)
        #expect(!FileManager.default.fileExists(atPath: running.path))
    }

    @Test func clientThatStopsReadingIsThrottledNotFatal() throws {
        let running = try RunningService()
        let flooder = try UnixClient(path: running.path)
        _ = try flooder.next()
        try flooder.send(#"{"execute":"qmp_capabilities"}"#)
        // Far more replies than the socket buffers hold; the flooder never reads.
        let burst = String(repeating: #"{"execute":"query-commands"}"#, count: 200)
        var sent = 0
        let flags = fcntl(flooder.fd, F_GETFL)
        _ = fcntl(flooder.fd, F_SETFL, flags | O_NONBLOCK)
        for _ in 0..<200 {
            if (try? flooder.send(burst)) == nil { break }
            sent += 1
        }
        let other = try UnixClient(path: running.path)
        _ = try other.next()
        #expect(try other.execute(#"{"execute":"qmp_capabilities"}"#) == .object([("return", .object([]))]))
        #expect(try other.execute(#"{"execute":"query-jobs"}"#) == .object([("return", .array([]))]))
        _ = try other.execute(#"{"execute":"quit"}"#)
        #expect(running.waitForExit())
    }

    @Test func staleSocketFileIsReplacedAndLongPathsRefused() throws {
        let directory = NSTemporaryDirectory() + "qcowkit-qmp-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/stale.sock"
        try #require(FileManager.default.createFile(atPath: path, contents: Data("old".utf8)))
        let service = try QMPService(version: QMPVersion(package: "test"))
        try service.addSocketMonitor(path: path, pretty: false)
        var attributes = stat()
        #expect(stat(path, &attributes) == 0 && (attributes.st_mode & S_IFMT) == S_IFSOCK)
        service.abandon()
        #expect(!FileManager.default.fileExists(atPath: path))

        let long = directory + "/" + String(repeating: "x", count: 120)
        #expect(throws: QMPServiceError("UNIX socket path '\(long)' is too long\nPath must be less than 108 bytes")) {
            try QMPService(version: QMPVersion(package: "test")).addSocketMonitor(path: long, pretty: false)
        }
    }
}
