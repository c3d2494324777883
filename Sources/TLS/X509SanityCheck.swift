// QEMU's checks of its own X.509 files when credentials load
// (qcrypto_tls_creds_x509_sanity_check): the certificate and each CA
// certificate are current, have the right basic constraints, key usage and
// (for the certificate) purpose, and the certificate verifies against the CA
// list. A broken directory is refused at load time, in QEMU's words, rather
// than at each client's handshake.
import CGnuTLS
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct X509SanityCheck {
    let gnutls: GnuTLS

    /// QEMU reads at most this many CA certificates for the check.
    static let maxCACertificates = 16

    func check(isServer: Bool, caCertFile: String, certFile: String?) throws {
        var cert: gnutls_x509_crt_t?
        var caCerts: [gnutls_x509_crt_t] = []
        defer {
            if let cert { gnutls.gnutls_x509_crt_deinit(cert) }
            caCerts.forEach { gnutls.gnutls_x509_crt_deinit($0) }
        }
        if let certFile, access(certFile, R_OK) == 0 {
            cert = try loadCertificate(certFile, isServer: isServer)
        }
        if access(caCertFile, R_OK) == 0 {
            caCerts = try loadCAList(caCertFile)
        }
        if let cert, let certFile {
            try checkCertificate(cert, file: certFile, isServer: isServer, isCA: false)
        }
        for caCert in caCerts {
            try checkCertificate(caCert, file: caCertFile, isServer: isServer, isCA: true)
        }
        if let cert, let certFile, !caCerts.isEmpty {
            try checkPair(cert, file: certFile, caCerts: caCerts, caFile: caCertFile, isServer: isServer)
        }
    }

    private func pemDatum<T>(_ bytes: inout [UInt8], _ body: (inout gnutls_datum_t) -> T) -> T {
        // QEMU passes strlen(contents): a NUL ends the text.
        let length = bytes.firstIndex(of: 0) ?? bytes.count
        return bytes.withUnsafeMutableBufferPointer { buffer in
            var datum = gnutls_datum_t(data: buffer.baseAddress, size: UInt32(length))
            return body(&datum)
        }
    }

    private func loadCertificate(_ file: String, isServer: Bool) throws -> gnutls_x509_crt_t {
        var cert: gnutls_x509_crt_t?
        let status = gnutls.gnutls_x509_crt_init(&cert)
        guard status >= 0, let cert else { throw TLSError("Unable to initialize certificate: \(gnutls.errorText(status))") }
        do {
            var contents: [UInt8]
            do { contents = try PEMFile.read(file) } catch let error as TLSError {
                throw TLSError("Cannot load CA cert list \(file): \(error.message)")
            }
            let imported = pemDatum(&contents) { gnutls.gnutls_x509_crt_import(cert, &$0, GNUTLS_X509_FMT_PEM) }
            guard imported >= 0 else {
                throw TLSError("Unable to import \(isServer ? "server" : "client") certificate \(file): \(gnutls.errorText(imported))")
            }
        } catch {
            gnutls.gnutls_x509_crt_deinit(cert)
            throw error
        }
        return cert
    }

    private func loadCAList(_ file: String) throws -> [gnutls_x509_crt_t] {
        var contents: [UInt8]
        do { contents = try PEMFile.read(file) } catch let error as TLSError {
            throw TLSError("Cannot load CA cert list \(file): \(error.message)")
        }
        var slots = [gnutls_x509_crt_t?](repeating: nil, count: Self.maxCACertificates)
        var count = UInt32(Self.maxCACertificates)
        let status = pemDatum(&contents) { datum in
            slots.withUnsafeMutableBufferPointer { gnutls.gnutls_x509_crt_list_import($0.baseAddress, &count, &datum, GNUTLS_X509_FMT_PEM, 0) }
        }
        guard status >= 0 else { throw TLSError("Unable to import CA certificate list \(file)") }
        return slots.prefix(Int(count)).compactMap { $0 }
    }

    private func checkCertificate(_ cert: gnutls_x509_crt_t, file: String, isServer: Bool, isCA: Bool) throws {
        let role = isCA ? "CA" : isServer ? "server" : "client"
        let now = time(nil)
        if gnutls.gnutls_x509_crt_get_expiration_time(cert) < now {
            throw TLSError("The \(role) certificate \(file) has expired")
        }
        if gnutls.gnutls_x509_crt_get_activation_time(cert) > now {
            throw TLSError("The \(role) certificate \(file) is not yet active")
        }

        let constraints = gnutls.gnutls_x509_crt_get_basic_constraints(cert, nil, nil, nil)
        if constraints > 0 {
            if !isCA {
                throw TLSError("The certificate \(file) basic constraints show a CA, but we need one for a \(isServer ? "server" : "client")")
            }
        } else if constraints == 0 {
            if isCA { throw TLSError("The certificate \(file) basic constraints do not show a CA") }
        } else if constraints == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE {
            if isCA { throw TLSError("The certificate \(file) is missing basic constraints for a CA") }
        } else {
            throw TLSError("Unable to query certificate \(file) basic constraints: \(gnutls.errorText(constraints))")
        }

        var usage: UInt32 = 0, critical: UInt32 = 0
        let usageStatus = gnutls.gnutls_x509_crt_get_key_usage(cert, &usage, &critical)
        if usageStatus < 0 {
            guard usageStatus == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE else {
                throw TLSError("Unable to query certificate \(file) key usage: \(gnutls.errorText(usageStatus))")
            }
            usage = isCA ? UInt32(GNUTLS_KEY_KEY_CERT_SIGN) : UInt32(GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_ENCIPHERMENT)
        }
        if critical != 0 {
            if isCA {
                if usage & UInt32(GNUTLS_KEY_KEY_CERT_SIGN) == 0 {
                    throw TLSError("Certificate \(file) usage does not permit certificate signing")
                }
            } else {
                // QEMU 7.2 checks signing only (later versions also refuse RSA
                // keys without key encipherment).
                if usage & UInt32(GNUTLS_KEY_DIGITAL_SIGNATURE) == 0 {
                    throw TLSError("Certificate \(file) usage does not permit digital signature")
                }
            }
        }
        if !isCA { try checkPurpose(cert, file: file, isServer: isServer) }
    }

    private func checkPurpose(_ cert: gnutls_x509_crt_t, file: String, isServer: Bool) throws {
        var allowServer = false, allowClient = false, critical = false
        var index: UInt32 = 0
        while true {
            var size = 0
            var status = gnutls.gnutls_x509_crt_get_key_purpose_oid(cert, index, nil, &size, nil)
            if status == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE {
                // No purposes at all: any use.
                if index == 0 { allowServer = true; allowClient = true }
                break
            }
            guard status == GNUTLS_E_SHORT_MEMORY_BUFFER, size > 0, size < 4096 else {
                throw TLSError("Unable to query certificate \(file) key purpose: \(gnutls.errorText(status))")
            }
            var buffer = [CChar](repeating: 0, count: size)
            var purposeCritical: UInt32 = 0
            status = gnutls.gnutls_x509_crt_get_key_purpose_oid(cert, index, &buffer, &size, &purposeCritical)
            guard status >= 0 else {
                throw TLSError("Unable to query certificate \(file) key purpose: \(gnutls.errorText(status))")
            }
            if purposeCritical != 0 { critical = true }
            let oid = cText(buffer)
            if oid == GNUTLS_KP_TLS_WWW_SERVER {
                allowServer = true
            } else if oid == GNUTLS_KP_TLS_WWW_CLIENT {
                allowClient = true
            } else if oid == GNUTLS_KP_ANY {
                allowServer = true; allowClient = true
            }
            index += 1
        }
        if isServer, !allowServer, critical {
            throw TLSError("Certificate \(file) purpose does not allow use with a TLS server")
        }
        if !isServer, !allowClient, critical {
            throw TLSError("Certificate \(file) purpose does not allow use with a TLS client")
        }
    }

    private func checkPair(_ cert: gnutls_x509_crt_t, file: String, caCerts: [gnutls_x509_crt_t],
                                  caFile: String, isServer: Bool) throws {
        var status: UInt32 = 0
        var list: [gnutls_x509_crt_t?] = [cert]
        var cas: [gnutls_x509_crt_t?] = caCerts
        let result = gnutls.gnutls_x509_crt_list_verify(&list, 1, &cas, UInt32(cas.count), nil, 0, 0, &status)
        guard result >= 0 else {
            throw TLSError("Unable to verify \(isServer ? "server" : "client") certificate \(file) against CA certificate \(caFile)")
        }
        if status != 0 {
            throw TLSError("Our own certificate \(file) failed validation against \(caFile): \(Self.verificationReason(status))")
        }
    }

    /// QEMU's one-line reason for a failed verification (the last flag it tests wins).
    static func verificationReason(_ status: UInt32) -> String {
        var reason = "Invalid certificate"
        if status & GNUTLS_CERT_INVALID.rawValue != 0 { reason = "The certificate is not trusted" }
        if status & GNUTLS_CERT_SIGNER_NOT_FOUND.rawValue != 0 { reason = "The certificate hasn't got a known issuer" }
        if status & GNUTLS_CERT_REVOKED.rawValue != 0 { reason = "The certificate has been revoked" }
        if status & GNUTLS_CERT_INSECURE_ALGORITHM.rawValue != 0 { reason = "The certificate uses an insecure algorithm" }
        return reason
    }
}
