// A TLS session over a connected socket descriptor, for either end
// (crypto/tlssession.c): the handshake, then the checks QEMU makes of the
// peer, then a plain byte stream (read, write, close_notify). The session
// does not own the descriptor; whoever accepted or connected it closes it.
//
// Threads: GnuTLS lets one thread receive while another sends on the same
// session once the handshake is done; the read and write locks hold each
// direction to one thread at a time, so any thread may call either.
import CGnuTLS
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// @unchecked: the GnuTLS session pointer is immutable after init; receiving
// goes through `readLock` and sending through `writeLock` (one thread each way,
// as GnuTLS requires), and the handshake runs before the session is shared.
public final class TLSSession: @unchecked Sendable {
    public let credentials: TLSCredentials
    public let fd: Int32
    private let session: gnutls_session_t
    private let gnutls: GnuTLS
    /// The server name a client checks the certificate against.
    private let hostname: String?
    private let readLock = Mutex<Void>(())
    private let writeLock = Mutex<Void>(())
    private let handshakeDone = Atomic<Bool>(false)
    /// A blocking descriptor's EAGAIN is its timeout running out; a
    /// non-blocking one's means "poll, then try again".
    private let isNonBlocking: Bool
    /// The distinguished name of the peer's certificate, once verified.
    public private(set) var peerName: String?

    /// A session for the credentials' endpoint on `fd` (QEMU's priority
    /// strings; a server with X.509 credentials asks for, but does not
    /// itself demand, a client certificate: `verify-peer` decides).
    public init(credentials: TLSCredentials, fd: Int32, hostname: String? = nil) throws {
        self.credentials = credentials
        self.fd = fd
        self.hostname = hostname
        gnutls = credentials.gnutls
        isNonBlocking = fcntl(fd, F_GETFL) & O_NONBLOCK != 0
        let isServer = credentials.endpoint == .server
        var handle: gnutls_session_t?
        // No SIGPIPE for a peer that hung up: an error return instead.
        var status = gnutls.gnutls_init(&handle, UInt32(isServer ? GNUTLS_SERVER : GNUTLS_CLIENT) | UInt32(GNUTLS_NO_SIGNAL))
        guard status >= 0, let handle else { throw TLSError("Cannot initialize TLS session: \(gnutls.errorText(status))") }
        session = handle
        let basePriority = credentials.options.priority ?? "NORMAL"
        switch credentials.handle {
        case let .certificate(certificates):
            status = gnutls.gnutls_priority_set_direct(session, basePriority, nil)
            guard status >= 0 else {
                gnutls.gnutls_deinit(session)
                throw TLSError("Cannot set default TLS session priority \(basePriority): \(gnutls.errorText(status))")
            }
            status = gnutls.gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(certificates))
            if isServer { gnutls.gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST) }
        case let .pskServer(keys), let .pskClient(keys):
            let priority = "\(basePriority):+ECDHE-PSK:+DHE-PSK:+PSK"
            status = gnutls.gnutls_priority_set_direct(session, priority, nil)
            guard status >= 0 else {
                gnutls.gnutls_deinit(session)
                throw TLSError("Unable to set TLS session priority \(priority): \(gnutls.errorText(status))")
            }
            status = gnutls.gnutls_credentials_set(session, GNUTLS_CRD_PSK, UnsafeMutableRawPointer(keys))
        }
        guard status >= 0 else {
            gnutls.gnutls_deinit(session)
            throw TLSError("Cannot set session credentials: \(gnutls.errorText(status))")
        }
        if !isServer, let hostname {
            _ = gnutls.gnutls_server_name_set(session, GNUTLS_NAME_DNS, hostname, hostname.utf8.count)
        }
        gnutls.gnutls_transport_set_int2(session, fd, fd)
    }

    deinit {
        gnutls.gnutls_deinit(session)
    }

    /// Runs the handshake to the end, then checks the peer as QEMU does
    /// (qcrypto_tls_session_check_credentials). `timeoutMilliseconds` bounds
    /// a peer that stalls (nil: GnuTLS's default).
    public func handshake(timeoutMilliseconds: UInt32? = nil) throws {
        if let timeoutMilliseconds { gnutls.gnutls_handshake_set_timeout(session, timeoutMilliseconds) }
        while true {
            let status = gnutls.gnutls_handshake(session)
            if status == 0 { break }
            if gnutls.gnutls_error_is_fatal(status) == 0 {
                if status == GNUTLS_E_AGAIN { try waitForSocket(during: "handshake") }
                continue
            }
            throw TLSError("TLS handshake failed: \(gnutls.errorText(status))")
        }
        handshakeDone.store(true, ordering: .releasing)
        try checkPeer()
    }

    /// Decrypted bytes into `buffer`: how many, or 0 when the peer closed
    /// (close_notify, or a plain hang-up: QEMU's NBD server treats both as the
    /// end of the connection).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        return try readLock.withLock { _ in
            while true {
                let count = gnutls.gnutls_record_recv(session, buffer.baseAddress, buffer.count)
                if count >= 0 { return count }
                let status = Int32(count)
                switch status {
                case GNUTLS_E_PREMATURE_TERMINATION: return 0
                case GNUTLS_E_AGAIN: try waitForSocket(during: "read", events: Int16(POLLIN))
                case GNUTLS_E_INTERRUPTED: continue
                default:
                    if gnutls.gnutls_error_is_fatal(status) == 0 { continue }
                    throw TLSError("Cannot read from TLS channel: \(gnutls.errorText(status))")
                }
            }
        }
    }

    /// Encrypts and sends all of `bytes`. With `more`, the bytes wait (up to
    /// a record's worth) for the next write, so that the parts of one message
    /// go out in one record (gnutls_record_cork).
    public func write(_ bytes: UnsafeRawBufferPointer, more: Bool = false) throws {
        try writeLock.withLock { _ in
            if more { gnutls.gnutls_record_cork(session) }
            var offset = 0
            while offset < bytes.count {
                let count = gnutls.gnutls_record_send(session, bytes.baseAddress! + offset, bytes.count - offset)
                if count > 0 {
                    offset += count
                } else {
                    // After EAGAIN or EINTR GnuTLS wants the same call repeated.
                    try retry(Int32(count), during: "write")
                }
            }
            guard !more else { return }
            while true {
                let status = gnutls.gnutls_record_uncork(session, UInt32(GNUTLS_RECORD_WAIT))
                if status >= 0 { return }
                try retry(Int32(status), during: "write")
            }
        }
    }

    /// Waits out a non-fatal send status, or throws for a fatal one.
    private func retry(_ status: Int32, during step: String) throws {
        switch status {
        case GNUTLS_E_AGAIN: try waitForSocket(during: step, events: Int16(POLLOUT))
        case GNUTLS_E_INTERRUPTED: return
        default: throw TLSError("Cannot write to TLS channel: \(gnutls.errorText(status))")
        }
    }

    /// Sends close_notify (our side is done writing); errors do not matter
    /// to a connection being closed.
    public func bye() {
        guard handshakeDone.load(ordering: .acquiring) else { return }
        writeLock.withLock { _ in
            var status: Int32
            repeat { status = gnutls.gnutls_bye(session, GNUTLS_SHUT_WR) } while status == GNUTLS_E_INTERRUPTED
        }
    }

    /// The key size of the negotiated cipher in bytes (for logs and tests).
    public var cipherKeySize: Int {
        gnutls.gnutls_cipher_get_key_size(gnutls.gnutls_cipher_get(session))
    }

    /// GnuTLS's EAGAIN: on a non-blocking descriptor, waits until it can go
    /// on; on a blocking one, the socket's timeout ran out.
    private func waitForSocket(during step: String, events: Int16? = nil) throws {
        guard isNonBlocking else { throw TLSError("TLS \(step) timed out", isTimeout: true) }
        let wanted = events ?? (gnutls.gnutls_record_get_direction(session) == 0 ? Int16(POLLIN) : Int16(POLLOUT))
        var entry = pollfd(fd: fd, events: wanted, revents: 0)
        while poll(&entry, 1, -1) < 0 {
            guard errno == EINTR else { throw TLSError("Cannot wait for TLS channel: \(String(cString: strerror(errno)))") }
        }
    }

    // MARK: The peer

    private func checkPeer() throws {
        guard case .certificate = credentials.handle, credentials.options.verifyPeer else { return }
        var status: UInt32 = 0
        let result = gnutls.gnutls_certificate_verify_peers2(session, &status)
        guard result >= 0 else { throw TLSError("Verify failed: \(gnutls.errorText(result))") }
        guard status == 0 else { throw TLSError(X509SanityCheck.verificationReason(status)) }
        var count: UInt32 = 0
        guard let peers = gnutls.gnutls_certificate_get_peers(session, &count), count > 0 else {
            throw TLSError("No certificate peers")
        }
        let now = time(nil)
        for index in 0..<Int(count) {
            var cert: gnutls_x509_crt_t?
            let initStatus = gnutls.gnutls_x509_crt_init(&cert)
            guard initStatus >= 0, let cert else { throw TLSError("Cannot initialize certificate: \(gnutls.errorText(initStatus))") }
            defer { gnutls.gnutls_x509_crt_deinit(cert) }
            var datum = peers[index]
            let imported = gnutls.gnutls_x509_crt_import(cert, &datum, GNUTLS_X509_FMT_DER)
            guard imported >= 0 else { throw TLSError("Cannot import certificate: \(gnutls.errorText(imported))") }
            if gnutls.gnutls_x509_crt_get_expiration_time(cert) < now { throw TLSError("The certificate has expired") }
            if gnutls.gnutls_x509_crt_get_activation_time(cert) > now { throw TLSError("The certificate is not yet activated") }
            guard index == 0 else { continue }
            peerName = try distinguishedName(cert)
            if let hostname {
                guard gnutls.gnutls_x509_crt_check_hostname(cert, hostname) != 0 else {
                    throw TLSError("Certificate does not match the hostname \(hostname)")
                }
            } else if credentials.endpoint == .client {
                throw TLSError("No hostname for certificate validation")
            }
        }
    }

    private func distinguishedName(_ cert: gnutls_x509_crt_t) throws -> String {
        var size = 1024
        var buffer = [CChar](repeating: 0, count: size)
        var status = gnutls.gnutls_x509_crt_get_dn(cert, &buffer, &size)
        if status == GNUTLS_E_SHORT_MEMORY_BUFFER, size <= 65536 {
            buffer = [CChar](repeating: 0, count: size)
            status = gnutls.gnutls_x509_crt_get_dn(cert, &buffer, &size)
        }
        guard status >= 0 else { throw TLSError("Cannot get client distinguished name: \(gnutls.errorText(status))") }
        return cText(buffer)
    }
}
