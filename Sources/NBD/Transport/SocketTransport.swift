// A connected stream socket (unix or TCP) as an NBDTransport: the one place
// the server calls recv/send on a client's descriptor.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A connected socket. The descriptor stays open until `close()`, so a
/// TLS layer can hand it to its library (`descriptor`) for the session.
public final class SocketTransport: NBDTransport {
    /// The socket's descriptor.
    public let descriptor: Int32
    /// Whether `close()` ran. `shutdown()` comes from other threads (a server
    /// dropping its clients) and must never reach the number once closed: by
    /// then it may be another connection's socket.
    private let closed = Mutex<Bool>(false)

    /// Takes over `descriptor`, a connected stream socket.
    public init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    public func readExactly(into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let got = recv(descriptor, buffer.baseAddress! + done, buffer.count - done, 0)
            if got > 0 {
                done += got
            } else if got == 0 {
                throw NBDTransportError.endOfStream(partial: done > 0)
            } else if errno == EINTR {
                continue
            } else {
                throw Self.failure(errno)
            }
        }
    }

    public func writeAll(_ buffer: UnsafeRawBufferPointer, more: Bool) throws {
        var done = 0
        let flags = Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0)
        while done < buffer.count {
            let sent = send(descriptor, buffer.baseAddress! + done, buffer.count - done, flags)
            if sent >= 0 {
                done += sent
            } else if errno == EINTR {
                continue
            } else {
                throw Self.failure(errno)
            }
        }
    }

    /// EAGAIN is the socket's receive or send timeout running out.
    private static func failure(_ code: Int32) -> NBDTransportError {
        code == EAGAIN || code == EWOULDBLOCK ? .timedOut : .io(errno: code)
    }

    public func shutdown() {
        closed.withLock { closed in
            if !closed { _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    public func close() {
        closed.withLock { closed in
            guard !closed else { return }
            closed = true
            _ = Glibc.close(descriptor)
        }
    }

    /// Turns off Nagle's algorithm on TCP sockets (replies go out at once;
    /// `more` corks the parts of one reply). Harmless on unix sockets.
    func setNoDelay() {
        var one: Int32 = 1
        _ = setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
}
