// Our server sessions against GnuTLS client sessions (TLSSession with
// endpoint=client credentials, as QEMU's NBD client makes them) over a socket
// pair: X.509 with and without client certificates, PSK, and the refusals.
import Foundation
import Testing
import TestSupport
@testable import TLS

@Suite struct TLSSessionTests {
    /// Both ends' handshakes, then a message each way and close_notify.
    /// Returns the server's session (for its peer name) or the first failure
    /// of each side.
    private struct Outcome {
        var server: Result<TLSSession, any Error>
        var client: Result<TLSSession, any Error>
    }

    private func connect(server: TLSCredentialsOptions, client: TLSCredentialsOptions, hostname: String? = "localhost") throws -> Outcome {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw TLSTestFailure("socketpair") }
        defer { close(fds[0]); close(fds[1]) }
        let serverCredentials = try TLSCredentials(server)
        let clientCredentials = try TLSCredentials(client)
        let (serverFD, clientFD) = (fds[0], fds[1])
        // A side that fails shuts its end, so the other sees the end rather than waiting.
        let serverEnd = ThreadResult { () throws -> TLSSession in
            let session = try TLSSession(credentials: serverCredentials, fd: serverFD)
            do {
                try session.handshake()
                try Self.exchange(session, send: "hello from server", expect: "hello from client")
                session.bye()
                return session
            } catch {
                shutdown(serverFD, Int32(SHUT_RDWR))
                throw error
            }
        }
        let clientEnd = ThreadResult { () throws -> TLSSession in
            let session = try TLSSession(credentials: clientCredentials, fd: clientFD, hostname: hostname)
            do {
                try session.handshake()
                try Self.exchange(session, send: "hello from client", expect: "hello from server")
                session.bye()
                return session
            } catch {
                shutdown(clientFD, Int32(SHUT_RDWR))
                throw error
            }
        }
        let serverResult = Result { try serverEnd.get() }
        let clientResult = Result { try clientEnd.get() }
        return Outcome(server: serverResult, client: clientResult)
    }

    /// Sends a line, reads the peer's, and (after the peer's bye) reads the end.
    private static func exchange(_ session: TLSSession, send: String, expect: String) throws {
        try Array(send.utf8).withUnsafeBytes { try session.write($0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 7)   // small: several records' worth of reads
        while received.count < expect.utf8.count {
            let count = try buffer.withUnsafeMutableBytes { try session.read(into: $0) }
            guard count > 0 else { throw TLSTestFailure("end of stream after \(received.count) bytes") }
            received += buffer[0..<count]
        }
        guard String(decoding: received, as: UTF8.self) == expect else { throw TLSTestFailure("read \(received)") }
    }

    private func x509(_ dir: String, _ endpoint: TLSEndpoint, verifyPeer: Bool = true) -> TLSCredentialsOptions {
        var options = TLSCredentialsOptions(kind: .x509, dir: dir, endpoint: endpoint)
        options.verifyPeer = verifyPeer
        return options
    }

    private func psk(_ dir: String, _ endpoint: TLSEndpoint, username: String? = nil) -> TLSCredentialsOptions {
        var options = TLSCredentialsOptions(kind: .psk, dir: dir, endpoint: endpoint)
        options.username = username
        return options
    }

    private func message(_ result: Result<TLSSession, any Error>) -> String? {
        if case let .failure(error) = result { return "\(error)" }
        return nil
    }

    @Test func x509WithClientCertificate() throws {
        let fixtures = try TLSFixtures.get()
        let outcome = try connect(server: x509(fixtures.serverDir, .server), client: x509(fixtures.clientDir, .client))
        let server = try outcome.server.get()
        _ = try outcome.client.get()
        #expect(server.peerName == "O=QcowKit,CN=client")
        #expect(server.cipherKeySize > 0)
    }

    @Test func x509VerifyPeerOffTakesAnonymousClients() throws {
        let fixtures = try TLSFixtures.get()
        let outcome = try connect(server: x509(fixtures.serverDir, .server, verifyPeer: false),
                                  client: x509(fixtures.anonymousClientDir, .client))
        _ = try outcome.server.get()
        _ = try outcome.client.get()
    }

    @Test func x509VerifyPeerRefusesClientsWithoutCertificate() throws {
        let fixtures = try TLSFixtures.get()
        let outcome = try connect(server: x509(fixtures.serverDir, .server), client: x509(fixtures.anonymousClientDir, .client))
        let refusal = try #require(message(outcome.server))
        #expect(refusal.hasPrefix("Verify failed: ") || refusal == "No certificate peers")
    }

    @Test func wrongCAIsRefusedBothWays() throws {
        let fixtures = try TLSFixtures.get()
        // A client whose certificate another CA signed: the server refuses it.
        // (Its own sanity check would refuse it first: QEMU's as ours.)
        var rogueClient = x509(fixtures.rogueClientDir, .client)
        #expect(throws: TLSError("Our own certificate \(fixtures.rogueClientDir)/client-cert.pem failed validation against \(fixtures.rogueClientDir)/ca-cert.pem: The certificate hasn't got a known issuer")) {
            try TLSCredentials(rogueClient)
        }
        rogueClient.sanityCheck = false
        let rogue = try connect(server: x509(fixtures.serverDir, .server), client: rogueClient)
        // GnuTLS clients offer only a certificate from a CA the server names, so
        // the server sees none.
        #expect(message(rogue.server) == "Verify failed: No certificate was found.")
        // A client trusting another CA refuses our server.
        let distrust = try connect(server: x509(fixtures.serverDir, .server, verifyPeer: false),
                                   client: x509(fixtures.otherCAClientDir, .client))
        #expect(message(distrust.client) == "The certificate hasn't got a known issuer")
        #expect(message(distrust.server) != nil)
    }

    @Test func clientChecksTheServerName() throws {
        let fixtures = try TLSFixtures.get()
        let outcome = try connect(server: x509(fixtures.serverDir, .server, verifyPeer: false),
                                  client: x509(fixtures.anonymousClientDir, .client), hostname: "elsewhere.example")
        #expect(message(outcome.client) == "Certificate does not match the hostname elsewhere.example")
    }

    @Test func pskSession() throws {
        let fixtures = try TLSFixtures.get()
        let outcome = try connect(server: psk(fixtures.pskDir, .server), client: psk(fixtures.pskDir, .client, username: "alice"))
        _ = try outcome.server.get()
        _ = try outcome.client.get()
    }

    @Test func pskWrongKeyOrUserIsRefused() throws {
        let fixtures = try TLSFixtures.get()
        let wrongKey = try connect(server: psk(fixtures.pskDir, .server), client: psk(fixtures.wrongPSKDir, .client, username: "alice"))
        #expect(message(wrongKey.server)?.hasPrefix("TLS handshake failed: ") == true)
        #expect(message(wrongKey.client) != nil)
        // The client's default identity is "qemu", which the file lacks.
        #expect(throws: TLSError("Username qemu not found in PSK file \(fixtures.pskDir)/keys.psk")) {
            try TLSCredentials(psk(fixtures.pskDir, .client))
        }
    }

    @Test func endpointCheck() throws {
        let fixtures = try TLSFixtures.get()
        let client = try TLSCredentials(x509(fixtures.clientDir, .client))
        #expect(throws: TLSError("Expected TLS credentials for a server endpoint")) { try client.check(endpoint: .server) }
        try client.check(endpoint: .client)
    }
}
