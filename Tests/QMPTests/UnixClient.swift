import Foundation
import QemuJSON
import TestSupport

/// A QMP client over a unix socket, for tests: messages are read with a
/// deadline, so a service that stops answering fails the test instead of
/// hanging it.
final class UnixClient {
    let fd: Int32
    private var parser = JSONMessageParser()
    private var pending: [JSONValue] = []

    struct Failure: Error, CustomStringConvertible { var description: String }

    init(path: String) throws {
        do { fd = try UnixSocketConnect.connect(path: path) } catch { throw Failure(description: error.description) }
    }

    deinit { close(fd) }

    func send(_ text: String) throws { try Self.send(text, to: fd) }

    /// Sends on `fd` from any thread (the client's parser stays with its thread).
    static func send(_ text: String, to fd: Int32) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send: errno \(errno)") }
            offset += n
        }
    }

    /// The next message, waiting up to `seconds`.
    func next(seconds: Double = 20) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(seconds)
        while pending.isEmpty {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw Failure(description: "no message within \(seconds) s") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(left * 1000)) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw Failure(description: "connection closed") }
            for outcome in parser.feed(buffer[0..<n]) {
                if case let .value(value) = outcome { pending.append(value) }
            }
        }
        return pending.removeFirst()
    }

    /// Sends a command and returns its reply, collecting events that come first.
    func execute(_ text: String, events: inout [JSONValue]) throws -> JSONValue {
        try send(text)
        while true {
            let message = try next()
            if message["event"] != nil { events.append(message) } else { return message }
        }
    }

    func execute(_ text: String) throws -> JSONValue {
        var events: [JSONValue] = []
        return try execute(text, events: &events)
    }

    /// True once the service has closed the connection (EOF within `seconds`).
    func isClosedByPeer(seconds: Double = 20) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000)) > 0 else { return false }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }
}
