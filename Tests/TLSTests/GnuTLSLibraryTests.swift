// GnuTLS is opened on first use (GnuTLSLibrary.swift), not linked: a
// process that uses no TLS never loads it, and a missing library is a
// TLSError that says what to install.
import Testing
import TestSupport
@testable import TLS

@Suite struct GnuTLSLibraryTests {
    @Test func aMissingLibraryIsAClearError() {
        let loaded = GnuTLS.load("libgnutls-absent.so.30")
        #expect(throws: TLSError.self) { try loaded.get() }
        guard case let .failure(error) = loaded else { return }
        #expect(error.message.hasPrefix("TLS needs GnuTLS 3 (libgnutls-absent.so.30, Debian's libgnutls30): "))
        #expect(error.message.contains("libgnutls-absent.so.30: cannot open shared object file"))
    }

    @Test func aLibraryLackingAFunctionIsRefusedByName() {
        // zlib loads, but has none of GnuTLS's functions: the first one is named.
        guard case let .failure(error) = GnuTLS.load("libz.so.1") else {
            Issue.record("zlib taken for GnuTLS")
            return
        }
        #expect(error.message == "TLS needs GnuTLS 3 (libz.so.1), but the library found lacks gnutls_bye")
    }

    @Test func theInstalledLibraryLoads() throws {
        let gnutls = try GnuTLS.library()
        #expect(gnutls.errorText(-50) == "The request is invalid.")   // GNUTLS_E_INVALID_REQUEST
    }

    /// The dynamic loader's own account (glibc's LD_DEBUG): qcowkit's
    /// verbs start without GnuTLS or any of its dependencies.
    @Test func qcowkitStartsWithoutGnuTLS() throws {
        let run = try runClient(["qcowkit", "--version"], environment: ["LD_DEBUG": "files"])
        #expect(run.status == 0)
        #expect(run.output.contains("file=libc.so.6"))
        for library in ["libgnutls", "libnettle", "libhogweed", "libgmp", "libp11-kit", "libtasn1", "libidn2", "libunistring"] {
            #expect(!run.output.contains("file=\(library)"), "\(library) loaded at start-up")
        }
    }
}
