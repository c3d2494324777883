// Loaded TLS credentials: QEMU's tls-creds-x509 and tls-creds-psk objects
// after `complete` (crypto/tlscredsx509.c, crypto/tlscredspsk.c). Loading
// checks the directory in QEMU's order and with its messages; sessions
// (TLSSession) then share the GnuTLS credentials.
import CGnuTLS
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// @unchecked: the GnuTLS handles are set up once in init and only read
// afterwards; GnuTLS allows credentials to be shared by sessions on any thread.
public final class TLSCredentials: @unchecked Sendable {
    public let options: TLSCredentialsOptions

    enum Handle {
        case certificate(gnutls_certificate_credentials_t)
        case pskServer(gnutls_psk_server_credentials_t)
        case pskClient(gnutls_psk_client_credentials_t)
    }

    let handle: Handle
    private let dhParams: gnutls_dh_params_t?
    /// The library the handles belong to (sessions use it too).
    let gnutls: GnuTLS

    /// Loads GnuTLS on first use: a TLSError if it is not installed.
    public init(_ options: TLSCredentialsOptions) throws {
        self.options = options
        let gnutls = try GnuTLS.library()
        self.gnutls = gnutls
        switch options.kind {
        case .x509: (handle, dhParams) = try Self.loadX509(options, gnutls)
        case .psk: (handle, dhParams) = try Self.loadPSK(options, gnutls)
        }
    }

    deinit {
        switch handle {
        case let .certificate(credentials): gnutls.gnutls_certificate_free_credentials(credentials)
        case let .pskServer(credentials): gnutls.gnutls_psk_free_server_credentials(credentials)
        case let .pskClient(credentials): gnutls.gnutls_psk_free_client_credentials(credentials)
        }
        if let dhParams { gnutls.gnutls_dh_params_deinit(dhParams) }
    }

    public var endpoint: TLSEndpoint { options.endpoint }

    /// Refuses credentials made for the other side (qcrypto_tls_creds_check_endpoint).
    public func check(endpoint: TLSEndpoint) throws {
        guard options.endpoint == endpoint else {
            throw TLSError("Expected TLS credentials for a \(endpoint.rawValue) endpoint")
        }
    }

    // MARK: X.509

    private static func loadX509(_ options: TLSCredentialsOptions, _ gnutls: GnuTLS) throws -> (Handle, gnutls_dh_params_t?) {
        let isServer = options.endpoint == .server
        let caCert = try path(options, CredentialFile.caCert, required: true)
        var caCRL: String?, cert: String?, key: String?, dhFile: String?
        if isServer {
            caCRL = try path(options, CredentialFile.caCRL, required: false)
            cert = try path(options, CredentialFile.serverCert, required: true)
            key = try path(options, CredentialFile.serverKey, required: true)
            dhFile = try path(options, CredentialFile.dhParams, required: false)
        } else {
            cert = try path(options, CredentialFile.clientCert, required: false)
            key = try path(options, CredentialFile.clientKey, required: false)
        }
        guard let caCert else { throw TLSError("Missing 'dir' property value") }
        if options.sanityCheck {
            try X509SanityCheck(gnutls: gnutls).check(isServer: isServer, caCertFile: caCert, certFile: cert)
        }

        var credentials: gnutls_certificate_credentials_t?
        var status = gnutls.gnutls_certificate_allocate_credentials(&credentials)
        guard status >= 0, let credentials else {
            throw TLSError("Cannot allocate credentials: '\(gnutls.errorText(status))'")
        }
        var dhParams: gnutls_dh_params_t?
        do {
            status = gnutls.gnutls_certificate_set_x509_trust_file(credentials, caCert, GNUTLS_X509_FMT_PEM)
            guard status >= 0 else { throw TLSError("Cannot load CA certificate '\(caCert)': \(gnutls.errorText(status))") }
            if let cert, let key {
                status = gnutls.gnutls_certificate_set_x509_key_file2(credentials, cert, key, GNUTLS_X509_FMT_PEM, nil, 0)
                guard status >= 0 else {
                    throw TLSError("Cannot load certificate '\(cert)' & key '\(key)': \(gnutls.errorText(status))")
                }
            }
            if let caCRL {
                status = gnutls.gnutls_certificate_set_x509_crl_file(credentials, caCRL, GNUTLS_X509_FMT_PEM)
                guard status >= 0 else { throw TLSError("Cannot load CRL '\(caCRL)': \(gnutls.errorText(status))") }
            }
            if isServer {
                dhParams = try loadDHParams(dhFile, gnutls)
                if let dhParams {
                    gnutls.gnutls_certificate_set_dh_params(credentials, dhParams)
                } else {
                    _ = gnutls.gnutls_certificate_set_known_dh_params(credentials, GNUTLS_SEC_PARAM_MEDIUM)
                }
            }
        } catch {
            gnutls.gnutls_certificate_free_credentials(credentials)
            throw error
        }
        return (.certificate(credentials), dhParams)
    }

    // MARK: PSK

    private static func loadPSK(_ options: TLSCredentialsOptions, _ gnutls: GnuTLS) throws -> (Handle, gnutls_dh_params_t?) {
        if options.endpoint == .server {
            if options.username != nil { throw TLSError("username should not be set when endpoint=server") }
            let dhFile = try path(options, CredentialFile.dhParams, required: false)
            guard let pskFile = try path(options, CredentialFile.pskFile, required: true) else {
                throw TLSError("Missing 'dir' property value")
            }
            var credentials: gnutls_psk_server_credentials_t?
            let status = gnutls.gnutls_psk_allocate_server_credentials(&credentials)
            guard status >= 0, let credentials else { throw TLSError("Cannot allocate credentials: \(gnutls.errorText(status))") }
            let dhParams: gnutls_dh_params_t?
            do { dhParams = try loadDHParams(dhFile, gnutls) } catch {
                gnutls.gnutls_psk_free_server_credentials(credentials)
                throw error
            }
            // GnuTLS reads the key file at each handshake, so edits take effect
            // for new clients (as in QEMU).
            let fileStatus = gnutls.gnutls_psk_set_server_credentials_file(credentials, pskFile)
            guard fileStatus >= 0 else {
                gnutls.gnutls_psk_free_server_credentials(credentials)
                if let dhParams { gnutls.gnutls_dh_params_deinit(dhParams) }
                throw TLSError("Cannot set PSK server credentials: \(gnutls.errorText(fileStatus))")
            }
            if let dhParams {
                gnutls.gnutls_psk_set_server_dh_params(credentials, dhParams)
            } else {
                _ = gnutls.gnutls_psk_set_server_known_dh_params(credentials, GNUTLS_SEC_PARAM_MEDIUM)
            }
            return (.pskServer(credentials), dhParams)
        }
        guard let pskFile = try path(options, CredentialFile.pskFile, required: true) else {
            throw TLSError("Missing 'dir' property value")
        }
        let username = options.username ?? "qemu"
        let key = try PSKFile.key(for: username, in: pskFile)
        var credentials: gnutls_psk_client_credentials_t?
        let status = gnutls.gnutls_psk_allocate_client_credentials(&credentials)
        guard status >= 0, let credentials else { throw TLSError("Cannot allocate credentials: \(gnutls.errorText(status))") }
        var keyBytes = Array(key.utf8)
        let setStatus = keyBytes.withUnsafeMutableBufferPointer { buffer in
            var datum = gnutls_datum_t(data: buffer.baseAddress, size: UInt32(buffer.count))
            return gnutls.gnutls_psk_set_client_credentials(credentials, username, &datum, GNUTLS_PSK_KEY_HEX)
        }
        guard setStatus >= 0 else {
            gnutls.gnutls_psk_free_client_credentials(credentials)
            throw TLSError("Cannot set PSK client credentials: \(gnutls.errorText(setStatus))")
        }
        return (.pskClient(credentials), nil)
    }

    // MARK: Files

    /// DIR/NAME if it exists; nil if optional and absent, or if there is no
    /// directory and the file is optional (qcrypto_tls_creds_get_path).
    static func path(_ options: TLSCredentialsOptions, _ name: String, required: Bool) throws -> String? {
        guard let dir = options.dir else {
            if required { throw TLSError("Missing 'dir' property value") }
            return nil
        }
        let path = "\(dir)/\(name)"
        var info = stat()
        if stat(path, &info) < 0 {
            let code = errno
            if code == ENOENT && !required { return nil }
            throw TLSError("Unable to access credentials \(path): \(String(cString: strerror(code)))")
        }
        return path
    }

    /// QEMU generates 2048-bit parameters when the directory has none; GnuTLS's
    /// known RFC 7919 group of that strength serves the same purpose at no cost.
    private static func loadDHParams(_ file: String?, _ gnutls: GnuTLS) throws -> gnutls_dh_params_t? {
        guard let file else { return nil }
        var contents = try PEMFile.read(file)
        var params: gnutls_dh_params_t?
        var status = gnutls.gnutls_dh_params_init(&params)
        guard status >= 0, let params else { throw TLSError("Unable to initialize DH parameters: \(gnutls.errorText(status))") }
        status = contents.withUnsafeMutableBufferPointer { buffer in
            var datum = gnutls_datum_t(data: buffer.baseAddress, size: UInt32(buffer.count))
            return gnutls.gnutls_dh_params_import_pkcs3(params, &datum, GNUTLS_X509_FMT_PEM)
        }
        guard status >= 0 else {
            gnutls.gnutls_dh_params_deinit(params)
            throw TLSError("Unable to load DH parameters from \(file): \(gnutls.errorText(status))")
        }
        return params
    }
}

/// A NUL-terminated C string in a buffer GnuTLS filled.
func cText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
