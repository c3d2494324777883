// `qcowkit nbd` over TLS against clients we did not write, with qemu-nbd 7.2
// serving the same image with the same credentials as the oracle: libnbd's
// nbdinfo (X.509 with a client certificate, PSK, a plain client refused, a
// client of another CA refused) and qemu-img with --object
// tls-creds-x509,endpoint=client and --image-opts (info, convert).
import Foundation
import Testing
import TestSupport

/// An NBD server process listening on a unix socket until stopped.
private final class ServerProcess {
    let process = Process()

    /// `errorFile`: where the server's standard error goes (else nowhere).
    init(_ command: [String], socket: String, errorFile: String? = nil) throws {
        try? FileManager.default.removeItem(atPath: socket)
        let (executable, arguments) = try TestTools.resolve(command)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        if let errorFile {
            _ = FileManager.default.createFile(atPath: errorFile, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: errorFile)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        // Listening once the socket accepts (qemu-nbd makes its DH parameters first).
        while !Self.accepts(socket) {
            guard process.isRunning else { throw TLSTestFailure("\(command) exited with \(process.terminationStatus)") }
            usleep(20_000)
        }
    }

    private static func accepts(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.prefix(bytes.count - 1).enumerated() { bytes[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }

    /// SIGKILL: a qemu-nbd that Foundation's Process spawned inherits a
    /// signal mask blocking SIGTERM, so it would never see terminate().
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

@Suite(.serialized) struct TLSInteropTests {
    enum Server: String, CaseIterable { case qemu, qcowkit }

    private func serverCommand(_ server: Server, object: String, socket: String, image: String) -> [String] {
        let program = server == .qemu ? ["qemu-nbd"] : ["qcowkit", "nbd"]
        return program + ["--object", object, "--tls-creds", "tls0", "-k", socket, "-t", "-f", "qcow2", image]
    }

    /// What every client saw of one server with X.509 credentials.
    private func x509Outcomes(_ server: Server, fixtures: TLSFixtures, scratch: String) throws -> [String: ClientRun] {
        let socket = scratch + "/x509.sock", image = scratch + "/disk.qcow2"
        let running = try ServerProcess(serverCommand(server, object: "tls-creds-x509,id=tls0,dir=\(fixtures.serverDir),endpoint=server",
                                                      socket: socket, image: image), socket: socket)
        defer { running.stop() }
        var outcomes: [String: ClientRun] = [:]
        let uri = "nbds+unix:///?socket=\(socket)"
        outcomes["nbdinfo x509 size"] = try runClient(["nbdinfo", "--size", "\(uri)&tls-certificates=\(fixtures.clientDir)"])
        let json = try runClient(["nbdinfo", "--json", "\(uri)&tls-certificates=\(fixtures.clientDir)"])
        outcomes["nbdinfo x509 TLS"] = ClientRun(status: json.status, output: "\(json.output.contains("\"TLS\": true"))")
        // A plain client: refused before STARTTLS with NBD_REP_ERR_TLS_REQD's message.
        let plain = try runClient(["nbdinfo", "--size", "nbd+unix:///?socket=\(socket)"], environment: ["LIBNBD_DEBUG": "1"])
        outcomes["plain client"] = ClientRun(status: plain.status, output: plain.output.split(separator: "\n")
            .filter { $0.contains("server error message") || $0.hasPrefix("nbdinfo:") }.joined(separator: "\n"))
        // No client certificate (verify-peer defaults to on), or a server from a CA the client does not trust.
        outcomes["no client certificate"] = ClientRun(
            status: try runClient(["nbdinfo", "--size", "\(uri)&tls-certificates=\(fixtures.anonymousClientDir)"]).status, output: "")
        outcomes["untrusted server"] = ClientRun(
            status: try runClient(["nbdinfo", "--size", "\(uri)&tls-certificates=\(fixtures.otherCAClientDir)"]).status, output: "")
        let clientObject = "tls-creds-x509,id=tls0,dir=\(fixtures.clientDir),endpoint=client"
        let imageOpts = "driver=nbd,path=\(socket),tls-creds=tls0,tls-hostname=localhost"
        outcomes["qemu-img info"] = try runClient(["qemu-img", "info", "--object", clientObject, "--image-opts", imageOpts])
        let copy = scratch + "/copy-\(server).raw"
        outcomes["qemu-img convert"] = try runClient(["qemu-img", "convert", "--object", clientObject, "--image-opts", imageOpts,
                                                      "-O", "raw", copy])
        outcomes["converted content"] = try runClient(["qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", copy, image])
        return outcomes
    }

    private func pskOutcomes(_ server: Server, fixtures: TLSFixtures, scratch: String) throws -> [String: ClientRun] {
        let socket = scratch + "/psk.sock", image = scratch + "/disk.qcow2", errors = scratch + "/psk-\(server).err"
        let running = try ServerProcess(serverCommand(server, object: "tls-creds-psk,id=tls0,dir=\(fixtures.pskDir),endpoint=server",
                                                      socket: socket, image: image), socket: socket, errorFile: errors)
        defer { running.stop() }
        let uri = "nbds+unix://alice@/?socket=\(socket)"
        var outcomes = [
            "nbdinfo psk": try runClient(["nbdinfo", "--size", "\(uri)&tls-psk-file=\(fixtures.pskDir)/keys.psk"]),
            "nbdinfo wrong key": ClientRun(
                status: try runClient(["nbdinfo", "--size", "\(uri)&tls-psk-file=\(fixtures.wrongPSKDir)/keys.psk"]).status, output: ""),
            "qemu-img info": try runClient(["qemu-img", "info", "--object",
                                            "tls-creds-psk,id=tls0,dir=\(fixtures.pskDir),endpoint=client,username=alice",
                                            "--image-opts", "driver=nbd,path=\(socket),tls-creds=tls0"]),
        ]
        // What the server reported of the failed handshake, its program
        // name left out (the readiness probe's line depends on timing).
        running.stop()
        let log = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        outcomes["server log"] = ClientRun(status: 0, output: log.split(separator: "\n").filter { $0.contains("TLS") }.map {
            $0.split(separator: ":", maxSplits: 1).last.map(String.init) ?? ""
        }.joined(separator: "\n"))
        return outcomes
    }

    private func scratch(_ fixtures: TLSFixtures) throws -> String {
        let scratch = fixtures.root + "/interop"
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let image = scratch + "/disk.qcow2"
        for command in [["qemu-img", "create", "-q", "-f", "qcow2", image, "4M"],
                        ["qemu-io", "-c", "write -P 0x5a 64k 192k", "-c", "write -z 1M 64k", "-c", "write -P 7 3M 4k", image]] {
            let run = try runClient(command)
            guard run.status == 0 else { throw TLSTestFailure("\(command): \(run.output)") }
        }
        for tool in ["qemu-nbd", "nbdinfo"] {
            _ = try TestTools.program(tool, package: tool == "nbdinfo" ? "libnbd-bin" : "qemu-utils")
        }
        return scratch
    }

    @Test func x509AsQemuNBD() throws {
        let fixtures = try TLSFixtures.get()
        let scratch = try scratch(fixtures)
        let qemu = try x509Outcomes(.qemu, fixtures: fixtures, scratch: scratch)
        let ours = try x509Outcomes(.qcowkit, fixtures: fixtures, scratch: scratch)
        #expect(qemu["nbdinfo x509 size"] == ClientRun(status: 0, output: "4194304\n"))
        #expect(qemu["plain client"]?.output.contains("not permitted before TLS") == true)
        #expect(qemu["no client certificate"]?.status != 0 && qemu["untrusted server"]?.status != 0)
        #expect(qemu["converted content"] == ClientRun(status: 0, output: "Images are identical.\n"))
        for (client, run) in qemu.sorted(by: { $0.key < $1.key }) {
            #expect(ours[client] == run, "\(client)")
        }
    }

    @Test func pskAsQemuNBD() throws {
        let fixtures = try TLSFixtures.get()
        let scratch = try scratch(fixtures)
        let qemu = try pskOutcomes(.qemu, fixtures: fixtures, scratch: scratch)
        let ours = try pskOutcomes(.qcowkit, fixtures: fixtures, scratch: scratch)
        #expect(qemu["nbdinfo psk"] == ClientRun(status: 0, output: "4194304\n"))
        #expect(qemu["nbdinfo wrong key"]?.status != 0)
        #expect(qemu["server log"]?.output.contains(" option negotiation failed: TLS handshake failed: ") == true)
        for (client, run) in qemu.sorted(by: { $0.key < $1.key }) {
            #expect(ours[client] == run, "\(client)")
        }
    }
}
