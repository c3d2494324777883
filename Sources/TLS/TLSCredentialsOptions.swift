// The properties of QEMU's tls-creds-x509 and tls-creds-psk objects, as the
// `--object` and `object-add` readers (Sources/QMP) fill them in. Loading
// them (TLSCredentials) checks the directory as QEMU does.

/// Which side of a TLS session credentials are for (QCryptoTLSCredsEndpoint).
public enum TLSEndpoint: String, Sendable, CaseIterable {
    case client, server
}

public struct TLSCredentialsOptions: Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// tls-creds-x509: ca-cert.pem, server-cert.pem and server-key.pem (or
        /// client-cert.pem and client-key.pem), ca-crl.pem, dh-params.pem.
        case x509 = "tls-creds-x509"
        /// tls-creds-psk: keys.psk (lines `username:hexkey`), dh-params.pem.
        case psk = "tls-creds-psk"
    }

    public var kind: Kind
    public var dir: String?
    /// QEMU's default is client.
    public var endpoint: TLSEndpoint = .client
    /// X.509 only in effect: a server then requires a client certificate
    /// signed by its CA; a client checks the server's certificate and name.
    public var verifyPeer = true
    /// A GnuTLS priority string in place of "NORMAL".
    public var priority: String?
    /// PSK clients: the identity to use (QEMU's default "qemu"); refused for servers.
    public var username: String?
    /// X.509: check our own certificates when loading (QEMU's sanity-check).
    public var sanityCheck = true

    public init(kind: Kind, dir: String? = nil, endpoint: TLSEndpoint = .client) {
        self.kind = kind
        self.dir = dir
        self.endpoint = endpoint
    }
}

/// The files QEMU looks for in a credentials directory.
enum CredentialFile {
    static let caCert = "ca-cert.pem"
    static let caCRL = "ca-crl.pem"
    static let serverCert = "server-cert.pem"
    static let serverKey = "server-key.pem"
    static let clientCert = "client-cert.pem"
    static let clientKey = "client-key.pem"
    static let dhParams = "dh-params.pem"
    static let pskFile = "keys.psk"
}
