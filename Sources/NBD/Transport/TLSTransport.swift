// TLS over a client's socket after NBD_OPT_STARTTLS: the GnuTLS session
// (Sources/TLS) as an NBDTransport, and the provider the server calls to
// run the handshake (QEMU's tls-creds on an NBD server).
import TLS
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Server-side TLS with loaded credentials (endpoint=server).
public struct TLSCredentialsProvider: NBDTLSProvider {
    public let credentials: TLSCredentials

    /// Refuses client credentials, as nbd-server-start and qemu-nbd do.
    public init(_ credentials: TLSCredentials) throws {
        try credentials.check(endpoint: .server)
        self.credentials = credentials
    }

    public func startTLS(over socket: SocketTransport) throws -> any NBDTransport {
        let session = try TLSSession(credentials: credentials, fd: socket.descriptor)
        // The socket's handshake timeout (SO_RCVTIMEO) bounds a stalled client.
        try session.handshake()
        return TLSTransport(socket: socket, session: session)
    }
}

/// A TLS session's byte stream over the socket it runs on.
final class TLSTransport: NBDTransport {
    let socket: SocketTransport
    let session: TLSSession

    init(socket: SocketTransport, session: TLSSession) {
        self.socket = socket
        self.session = session
    }

    func readExactly(into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let got: Int
            do {
                got = try session.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            } catch let error as TLSError {
                throw error.isTimeout ? NBDTransportError.timedOut : NBDTransportError.io(errno: EIO)
            }
            guard got > 0 else { throw NBDTransportError.endOfStream(partial: done > 0) }
            done += got
        }
    }

    func writeAll(_ buffer: UnsafeRawBufferPointer, more: Bool) throws {
        do {
            try session.write(buffer, more: more)
        } catch let error as TLSError {
            throw error.isTimeout ? NBDTransportError.timedOut : NBDTransportError.io(errno: EPIPE)
        }
    }

    /// Wakes blocked reads and writes through the socket. No close_notify:
    /// QEMU 7.2's server sends none either, and a stalled peer could block it.
    func shutdown() { socket.shutdown() }

    func close() { socket.close() }
}
