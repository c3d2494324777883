// Credentials made by GnuTLS's certtool and psktool (gnutls-bin) for the TLS
// tests: one CA signing a server and a client certificate, a second CA
// signing a rogue client, and a PSK file; laid out in the directories QEMU's
// tls-creds objects read. Made once per test run.
import Foundation
import Synchronization

public struct TLSTestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs a program to the end: its exit status and standard error.
public func runTool(_ command: [String], in directory: String) throws -> (status: Int32, stderr: String) {
    let (executable, arguments) = try TestTools.resolve(command)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}

public struct TLSFixtures: Sendable {
    public let root: String
    /// ca-cert.pem (CA A), server-cert.pem and server-key.pem.
    public var serverDir: String { root + "/server" }
    /// ca-cert.pem (CA A), client-cert.pem and client-key.pem (CN=client).
    public var clientDir: String { root + "/client" }
    /// ca-cert.pem (CA A) only: a client that presents no certificate.
    public var anonymousClientDir: String { root + "/anonymous" }
    /// ca-cert.pem (CA A), a client certificate signed by CA B.
    public var rogueClientDir: String { root + "/rogue" }
    /// ca-cert.pem (CA B) only: a client that cannot verify the server.
    public var otherCAClientDir: String { root + "/other-ca" }
    /// keys.psk with alice's key (a server's directory and alice's client's).
    public var pskDir: String { root + "/psk" }
    /// keys.psk with another key for alice.
    public var wrongPSKDir: String { root + "/psk-wrong" }

    static let shared: Result<TLSFixtures, TLSTestFailure> = Result { try make() }.mapError { TLSTestFailure("\($0)") }

    public static func get() throws -> TLSFixtures { try shared.get() }

    private static func make() throws -> TLSFixtures {
        for tool in ["certtool", "psktool"] { _ = try TestTools.program(tool, package: "gnutls-bin") }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("qcowkit-tls-\(getpid())").path
        try? FileManager.default.removeItem(atPath: root)
        let fixtures = TLSFixtures(root: root)
        for dir in [root + "/work", fixtures.serverDir, fixtures.clientDir, fixtures.anonymousClientDir,
                    fixtures.rogueClientDir, fixtures.otherCAClientDir, fixtures.pskDir, fixtures.wrongPSKDir] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        let work = root + "/work"
        func certtool(_ arguments: [String]) throws {
            let result = try runTool(["certtool"] + arguments, in: work)
            guard result.status == 0 else { throw TLSTestFailure("certtool \(arguments): \(result.stderr)") }
        }
        func template(_ name: String, _ lines: [String]) throws {
            try (lines.joined(separator: "\n") + "\nexpiration_days = 3650\n").write(toFile: "\(work)/\(name)", atomically: true, encoding: .utf8)
        }
        func key(_ name: String) throws { try certtool(["--generate-privkey", "--key-type=ecdsa", "--outfile", name]) }
        for ca in ["a", "b"] {
            try key("ca-\(ca)-key.pem")
            try template("ca-\(ca).info", ["cn = Test CA \(ca)", "ca", "cert_signing_key"])
            try certtool(["--generate-self-signed", "--load-privkey", "ca-\(ca)-key.pem", "--template", "ca-\(ca).info",
                          "--outfile", "ca-\(ca)-cert.pem"])
        }
        func leaf(_ name: String, ca: String, _ lines: [String]) throws {
            try key("\(name)-key.pem")
            try template("\(name).info", lines + ["encryption_key", "signing_key"])
            try certtool(["--generate-certificate", "--load-ca-certificate", "ca-\(ca)-cert.pem", "--load-ca-privkey",
                          "ca-\(ca)-key.pem", "--load-privkey", "\(name)-key.pem", "--template", "\(name).info",
                          "--outfile", "\(name)-cert.pem"])
        }
        try leaf("server", ca: "a", ["organization = QcowKit", "cn = localhost", "dns_name = localhost",
                                     "ip_address = 127.0.0.1", "tls_www_server"])
        try leaf("client", ca: "a", ["organization = QcowKit", "cn = client", "tls_www_client"])
        try leaf("rogue", ca: "b", ["organization = Elsewhere", "cn = rogue", "tls_www_client"])
        func copy(_ file: String, _ dir: String, as name: String) throws {
            try FileManager.default.copyItem(atPath: "\(work)/\(file)", toPath: "\(dir)/\(name)")
        }
        try copy("ca-a-cert.pem", fixtures.serverDir, as: "ca-cert.pem")
        try copy("server-cert.pem", fixtures.serverDir, as: "server-cert.pem")
        try copy("server-key.pem", fixtures.serverDir, as: "server-key.pem")
        for dir in [fixtures.clientDir, fixtures.anonymousClientDir, fixtures.rogueClientDir] {
            try copy("ca-a-cert.pem", dir, as: "ca-cert.pem")
        }
        try copy("client-cert.pem", fixtures.clientDir, as: "client-cert.pem")
        try copy("client-key.pem", fixtures.clientDir, as: "client-key.pem")
        try copy("rogue-cert.pem", fixtures.rogueClientDir, as: "client-cert.pem")
        try copy("rogue-key.pem", fixtures.rogueClientDir, as: "client-key.pem")
        try copy("ca-b-cert.pem", fixtures.otherCAClientDir, as: "ca-cert.pem")
        for dir in [fixtures.pskDir, fixtures.wrongPSKDir] {
            let result = try runTool(["psktool", "-u", "alice", "-p", "\(dir)/keys.psk"], in: work)
            guard result.status == 0 else { throw TLSTestFailure("psktool: \(result.stderr)") }
        }
        return fixtures
    }
}

/// Runs `body` on a thread of its own (TLS handshakes block until the
/// other end answers, so the two ends of a test cannot share a thread).
public final class ThreadResult<T: Sendable>: Sendable {
    private let result = Mutex<Result<T, any Error>?>(nil)
    private let done = DispatchSemaphore(value: 0)

    public init(_ body: @escaping @Sendable () throws -> T) {
        Thread { [self] in
            let outcome = Result { try body() }
            result.withLock { $0 = outcome }
            done.signal()
        }.start()
    }

    public func get() throws -> T {
        done.wait()
        return try result.withLock { $0! }.get()
    }
}
