// The byte stream a connection speaks over: read exactly N bytes, write all
// of a buffer, shut down. A plain socket is the first; after NBD_OPT_STARTTLS
// the TLS layer (NBDTLSProvider) wraps the socket's stream in its own, and
// everything after the handshake goes through that one.

/// Why a transport read or write failed.
public enum NBDTransportError: Error, Sendable, Equatable {
    /// The peer closed the stream; `partial` when some bytes of the read came first.
    case endOfStream(partial: Bool)
    /// A system call failed with this errno.
    case io(errno: Int32)
    /// No byte came within the receive timeout (a stalled handshake).
    case timedOut
}

/// A connection's byte stream. Reads come from one thread at a time (the
/// connection's reader), writes from one at a time (under the connection's
/// send lock); `shutdown` may come from any thread and wakes both.
public protocol NBDTransport: AnyObject, Sendable {
    /// Fills `buffer` completely, or throws `NBDTransportError`.
    func readExactly(into buffer: UnsafeMutableRawBufferPointer) throws
    /// Writes all of `buffer`, or throws `NBDTransportError`. `more` says
    /// that another part of the same message follows at once (a hint to
    /// send them together).
    func writeAll(_ buffer: UnsafeRawBufferPointer, more: Bool) throws
    /// Ends both directions: blocked and later reads and writes fail.
    func shutdown()
    /// Releases the stream's resources; called once, after every reader and
    /// writer is done.
    func close()
}

extension NBDTransport {
    /// Reads `count` bytes into a new array.
    func read(count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        if count > 0 { try bytes.withUnsafeMutableBytes { try readExactly(into: $0) } }
        return bytes
    }

    /// Writes `bytes` whole.
    func write(_ bytes: [UInt8], more: Bool = false) throws {
        try bytes.withUnsafeBytes { try writeAll($0, more: more) }
    }

    /// Reads and drops `count` bytes, a bounded buffer at a time (an option
    /// or payload the server does not keep).
    func discard(count: UInt64) throws {
        var left = count
        var scratch = [UInt8](repeating: 0, count: Int(min(count, 64 << 10)))
        while left > 0 {
            let chunk = Int(min(left, UInt64(scratch.count)))
            try scratch.withUnsafeMutableBytes { try readExactly(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<chunk])) }
            left -= UInt64(chunk)
        }
    }
}
