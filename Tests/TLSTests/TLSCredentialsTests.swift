// Loading credentials directories: the messages for broken ones, compared
// with qemu-nbd 7.2's for the same --object (QEMU loads credentials when the
// object is created, before anything is served, so qemu-nbd stops there).
import Foundation
import Testing
import TestSupport
@testable import TLS

@Suite struct TLSCredentialsTests {
    /// qemu-nbd's message for `--object KIND,id=t,PROPERTIES` (nil if it loaded).
    private func qemuMessage(_ object: String, in directory: String) throws -> String? {
        _ = try TestTools.program("qemu-nbd", package: "qemu-utils")
        let result = try runTool(["qemu-nbd", "--object", object, "/nonexistent/image"], in: directory)
        let line = result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        let prefix = "qemu-nbd: "
        // Loaded: qemu-nbd went on to the image, which does not exist.
        if line.contains("/nonexistent/image") { return nil }
        return line.hasPrefix(prefix) ? String(line.dropFirst(prefix.count)) : line
    }

    private func ourMessage(_ options: TLSCredentialsOptions) -> String? {
        do { _ = try TLSCredentials(options); return nil } catch { return "\(error)" }
    }

    @Test func brokenDirectoriesAsQEMU() throws {
        let fixtures = try TLSFixtures.get()
        let scratch = fixtures.root + "/broken"
        try? FileManager.default.removeItem(atPath: scratch)
        let fm = FileManager.default
        for dir in ["empty", "ca-only", "no-key", "swapped", "garbage", "psk-empty"] {
            try fm.createDirectory(atPath: "\(scratch)/\(dir)", withIntermediateDirectories: true)
        }
        try fm.copyItem(atPath: fixtures.serverDir + "/ca-cert.pem", toPath: scratch + "/ca-only/ca-cert.pem")
        for file in ["ca-cert.pem", "server-cert.pem"] {
            try fm.copyItem(atPath: "\(fixtures.serverDir)/\(file)", toPath: "\(scratch)/no-key/\(file)")
        }
        // The CA's certificate where the server's belongs.
        try fm.copyItem(atPath: fixtures.serverDir + "/ca-cert.pem", toPath: scratch + "/swapped/ca-cert.pem")
        try fm.copyItem(atPath: fixtures.serverDir + "/ca-cert.pem", toPath: scratch + "/swapped/server-cert.pem")
        try fm.copyItem(atPath: fixtures.serverDir + "/server-key.pem", toPath: scratch + "/swapped/server-key.pem")
        try fm.copyItem(atPath: fixtures.serverDir + "/ca-cert.pem", toPath: scratch + "/garbage/ca-cert.pem")
        try "not a certificate\n".write(toFile: scratch + "/garbage/server-cert.pem", atomically: true, encoding: .utf8)
        try fm.copyItem(atPath: fixtures.serverDir + "/server-key.pem", toPath: scratch + "/garbage/server-key.pem")

        struct Case { var object: String; var options: TLSCredentialsOptions }
        func x509(_ dir: String?, _ endpoint: TLSEndpoint = .server, sanityCheck: Bool = true) -> Case {
            var options = TLSCredentialsOptions(kind: .x509, dir: dir, endpoint: endpoint)
            options.sanityCheck = sanityCheck
            let text = "tls-creds-x509,id=t,endpoint=\(endpoint.rawValue)" + (dir.map { ",dir=\($0)" } ?? "")
                + (sanityCheck ? "" : ",sanity-check=off")
            return Case(object: text, options: options)
        }
        func psk(_ dir: String?, username: String? = nil) -> Case {
            var options = TLSCredentialsOptions(kind: .psk, dir: dir, endpoint: .server)
            options.username = username
            let text = "tls-creds-psk,id=t,endpoint=server" + (dir.map { ",dir=\($0)" } ?? "") + (username.map { ",username=\($0)" } ?? "")
            return Case(object: text, options: options)
        }
        let cases = [
            x509(nil), x509("\(scratch)/missing"), x509("\(scratch)/empty"), x509("\(scratch)/ca-only"),
            x509("\(scratch)/no-key"), x509("\(scratch)/swapped"), x509("\(scratch)/garbage"),
            x509("\(scratch)/garbage", sanityCheck: false),
            x509(fixtures.serverDir), x509(fixtures.clientDir, .client), x509("\(scratch)/empty", .client),
            psk(nil), psk("\(scratch)/psk-empty"), psk(fixtures.pskDir), psk(fixtures.pskDir, username: "alice"),
        ]
        for testCase in cases {
            let expected = try qemuMessage(testCase.object, in: scratch)
            #expect(ourMessage(testCase.options) == expected, "\(testCase.object)")
        }
    }

    /// `--object` itself: keyval and JSON spellings, QAPI's member checks,
    /// as `qcowkit nbd` and qemu-nbd 7.2 report them (program names aside).
    @Test func objectOptionAsQemuNBD() throws {
        let fixtures = try TLSFixtures.get()
        let dir = fixtures.serverDir, psk = fixtures.pskDir
        let objects = [
            "tls-creds-x509,id=t,dir=\(dir),endpoint=server,verify-peer=maybe",
            "tls-creds-x509,id=t,dir=\(dir),endpoint=serve",
            "tls-creds-x509,id=t,dir=\(dir),endpoint=server,bogus=1",
            "tls-creds-x509,dir=\(dir),endpoint=server",
            "foo,id=x", "id=x",
            "tls-creds-x509,id=t,dir=\(dir),endpoint=server,dir.x=1",
            #"{"qom-type":"tls-creds-psk","id":"p","dir":"\#(psk)","endpoint":"server"}"#,
            #"{"qom-type":"tls-creds-psk","id":"p","dir":"\#(psk)","endpoint":"server","verify-peer":"on"}"#,
            "tls-creds-psk,id=p,dir=\(psk),endpoint=server,username=x",
            "tls-creds-x509,id=t,dir=\(dir),endpoint=server,sanity-check=off,priority=NORMAL",
            // Secrets: checked as QEMU creates them, then unused.
            "secret,id=s,data=x", "secret,id=s", "secret,id=s,file=/nonexistent", "secret,id=s,data=x,format=bad",
        ]
        func message(_ command: [String]) throws -> String {
            let run = try runTool(command, in: fixtures.root)
            return "exit \(run.status)" + run.stderr.split(separator: "\n").map { String($0.drop { $0 != ":" }) }.joined(separator: "\n")
        }
        for object in objects {
            let expected = try message(["qemu-nbd", "--object", object, "/nonexistent/image"])
            let ours = try message(["qcowkit", "nbd", "--object", object, "/nonexistent/image"])
            #expect(ours == expected, "\(object)")
        }
        // Object types qcowkit does not have are refused by name (QEMU would create them).
        #expect(try message(["qcowkit", "nbd", "--object", "tls-creds-anon,id=a", "/nonexistent/image"])
            == "exit 1: object type 'tls-creds-anon' is not supported by qcowkit")
    }

    /// qemu-img verbs take --object through the same registry: credentials
    /// load (or fail) as with qemu-img 7.2, whose later open error shows an
    /// object was made.
    @Test func objectOptionAsQemuImg() throws {
        let fixtures = try TLSFixtures.get()
        let objects = [
            "tls-creds-x509,id=t,dir=\(fixtures.serverDir),endpoint=server",
            "tls-creds-x509,id=t,dir=\(fixtures.clientDir),endpoint=client",
            "tls-creds-x509,id=t,dir=\(fixtures.serverDir)/missing,endpoint=server",
            "tls-creds-psk,id=p,dir=\(fixtures.pskDir),endpoint=server",
            "tls-creds-x509,id=t,dir=\(fixtures.serverDir),endpoint=server,verify-peer=maybe",
            #"{"qom-type":"secret","id":"s","data":"x"}"#, "iothread,id=i",
        ]
        func message(_ command: [String]) throws -> String {
            let run = try runTool(command, in: fixtures.root)
            return "exit \(run.status)" + run.stderr.split(separator: "\n").map { String($0.drop { $0 != ":" }) }.joined(separator: "\n")
        }
        for object in objects {
            let expected = try message(["qemu-img", "info", "--object", object, "/nonexistent/image"])
            let ours = try message(["qcowkit", "info", "--object", object, "/nonexistent/image"])
            #expect(ours == expected, "\(object)")
        }
    }
}
