// serve's NBD server against qemu-storage-daemon 7.2 (Debian's 7.2.22, which
// has the CVE-2024-7409 fixes of 7.2.14) on its limits: a client that
// stalls in the handshake is dropped after NBD_DEFAULT_HANDSHAKE_MAX_SECS
// (10 s) and its slot goes to the next client; max-connections holds further
// clients back (no greeting) until a slot frees, defaults to 100 (the 101st
// client waits), and max-connections=1 stops multi-conn being advertised.
// The same steps run on both services; what the clients see must be the same.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct NBDServerLimitsServiceTests {
    /// The end of the server's greeting ("NBDMAGIC" "IHAVEOPT", flags 3).
    private static let greetingEnd = Array("IHAVEOPT".utf8) + [0, 3]

    private struct Served {
        var service: ComparedService
        var scratch: HostileScratch
        var socket: String
    }

    /// A service of each kind exporting a 4 MiB image on a unix socket with
    /// these --nbd-server options after the address.
    private func serve(_ serverOptions: String, label: String) throws -> [Served] {
        try ComparedService.Kind.allCases.map { kind in
            let scratch = try HostileScratch("nbdlimits-\(label)-\(kind)")
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", scratch.file("disk.qcow2"), "4M")
            let socket = scratch.file("nbd.sock")
            let service = try ComparedService(
                kind, blockdevs: ["driver=qcow2,file.driver=file,file.filename=\(scratch.file("disk.qcow2")),node-name=n0"],
                extraArguments: ["--nbd-server", "addr.type=unix,addr.path=\(socket)" + serverOptions,
                                 "--export", "nbd,id=e0,node-name=n0"],
                socketPath: scratch.file("qmp.sock"))
            _ = try service.connect()
            return Served(service: service, scratch: scratch, socket: socket)
        }
    }

    /// Waits (at most 60 s) for the server to close `client`'s connection.
    private func closedByServer(_ client: RawQMPClient) -> Bool {
        for _ in 0..<60 {
            do { try client.fill(milliseconds: 1000) } catch { return true }
        }
        return false
    }

    /// nbdinfo --size, started now and waited for later.
    private func startSize(_ socket: String) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestTools.program("nbdinfo", package: "libnbd-bin"))
        process.arguments = ["--size", "nbd+unix:///n0?socket=\(socket)"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return (process, output)
    }

    private func finish(_ run: (Process, Pipe)) -> ClientRun {
        let text = String(decoding: run.1.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.0.waitUntilExit()
        return ClientRun(status: run.0.terminationStatus, output: text)
    }

    @Test func stalledHandshakeGivesItsSlotBackAsQEMU() throws {
        // Both services at once, so the two 10 s waits overlap.
        let served = try serve(",max-connections=1", label: "stall")
        defer { served.forEach { $0.service.stop() } }
        var outcomes: [String] = []
        let stalled = try served.map { try RawQMPClient(path: $0.socket) }
        for client in stalled { _ = try client.read(through: Self.greetingEnd) }  // then nothing
        // The only slot is taken: this client waits until the stalled one is dropped.
        let waiting = try served.map { try startSize($0.socket) }
        for (client, run) in zip(stalled, waiting) {
            outcomes.append("stalled client closed by the server: \(closedByServer(client))")
            outcomes.append("next client: \(finish(run))")
        }
        #expect(outcomes[0...1] == outcomes[2...3], "qemu-storage-daemon, then qcowkit serve")
        #expect(outcomes[0...1] == ["stalled client closed by the server: true", "next client: exit 0: 4194304\n"])
    }

    @Test func stalledHandshakeLeavesOthersServedAsQEMU() throws {
        let served = try serve("", label: "others")
        defer { served.forEach { $0.service.stop() } }
        // Both services at once, so the two 10 s waits overlap.
        let stalled = try served.map { server -> RawQMPClient in
            let client = try RawQMPClient(path: server.socket)
            _ = try client.read(through: Self.greetingEnd)
            try client.send([0, 0, 0, 3] + Array("IHAVEOPT".utf8))  // flags, half an option header, then nothing
            return client
        }
        let meanwhile = try served.map { "meanwhile: \(finish(try startSize($0.socket)))" }
        var outcomes: [String] = []
        for (index, client) in stalled.enumerated() {
            outcomes += [meanwhile[index], "stalled client closed by the server: \(closedByServer(client))"]
        }
        #expect(outcomes[0...1] == outcomes[2...3], "qemu-storage-daemon, then qcowkit serve")
        #expect(outcomes[0...1] == ["meanwhile: exit 0: 4194304\n", "stalled client closed by the server: true"])
    }

    /// A client in transmission (NBD_OPT_EXPORT_NAME), a second one
    /// connected behind it: whether the second got its greeting while the
    /// first was connected, and once the first left.
    private func secondClient(_ socket: String) throws -> String {
        var first: RawQMPClient? = try RawQMPClient(path: socket)
        _ = try first!.read(through: Self.greetingEnd)
        // Fixed newstyle, no zeroes; NBD_OPT_EXPORT_NAME "n0"; its reply.
        try first!.send([0, 0, 0, 3] + Array("IHAVEOPT".utf8) + [0, 0, 0, 1, 0, 0, 0, 2] + Array("n0".utf8))
        try first!.fill(milliseconds: 5000)
        let second = try RawQMPClient(path: socket)
        // A server under its limit greets at once; one over it sends nothing
        // until a slot frees.
        if (try? second.read(through: Self.greetingEnd, seconds: 5)) != nil {
            return "second greeted while the first is connected"
        }
        first = nil
        _ = try second.read(through: Self.greetingEnd)
        return "second greeted once the first left"
    }

    /// Without max-connections: 100 clients are greeted, the 101st waits
    /// until one of them leaves (QEMU's NBD_DEFAULT_MAX_CONNECTIONS). All
    /// within the 10 s handshake limit, which would free the slots anyway.
    @Test func defaultLimitIs100AsQEMU() throws {
        let served = try serve("", label: "default")
        defer { served.forEach { $0.service.stop() } }
        let outcomes = try served.map { server -> String in
            var clients: [RawQMPClient] = []
            for _ in 0..<100 {
                let client = try RawQMPClient(path: server.socket)
                _ = try client.read(through: Self.greetingEnd)
                clients.append(client)
            }
            let last = try RawQMPClient(path: server.socket)
            if (try? last.read(through: Self.greetingEnd, seconds: 2)) != nil { return "101st greeted at once" }
            clients.removeFirst()
            _ = try last.read(through: Self.greetingEnd)
            return "101st greeted once one of 100 left"
        }
        #expect(outcomes == ["101st greeted once one of 100 left", "101st greeted once one of 100 left"])
    }

    @Test(arguments: ["", ",max-connections=1", ",max-connections=2", ",max-connections=0"])
    func maxConnectionsAsQEMU(_ options: String) throws {
        let served = try serve(options, label: "max")
        defer { served.forEach { $0.service.stop() } }
        let outcomes = try served.map { server -> [String] in
            let json = try runClient(["nbdinfo", "--json", "nbd+unix:///n0?socket=\(server.socket)"])
            let multiConn = json.output.split(separator: "\n").filter { $0.contains("can_multi_conn") }.map(String.init)
            return multiConn + [try secondClient(server.socket)]
        }
        #expect(outcomes[0] == outcomes[1], "qemu-storage-daemon, then qcowkit serve")
        let limited = options == ",max-connections=1"
        #expect(outcomes[0].last == (limited ? "second greeted once the first left" : "second greeted while the first is connected"))
    }
}
