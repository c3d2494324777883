// The seam TLS plugs into. A server configured with a provider requires TLS,
// as QEMU's does with tls-creds: before NBD_OPT_STARTTLS every option but
// ABORT is answered NBD_REP_ERR_TLS_REQD (EXPORT_NAME drops the client);
// STARTTLS is acknowledged, then the provider runs the handshake over the
// socket and every later byte goes through the stream it returns. Without a
// provider STARTTLS is answered NBD_REP_ERR_POLICY ("TLS not configured").

/// Runs the server side of TLS for NBD connections (GnuTLS in qcowkit).
public protocol NBDTLSProvider: Sendable {
    /// Runs the handshake on `socket`, right after the server acknowledged
    /// NBD_OPT_STARTTLS, and returns the encrypted stream over it. Throws to
    /// drop the client (a failed handshake, a refused certificate).
    /// The returned stream's `close()` must close `socket` too.
    func startTLS(over socket: SocketTransport) throws -> any NBDTransport
}
