// The server against hostile and broken clients, in process: every bad
// input ends in an error reply or a closed connection, other clients are
// served meanwhile, and the management API behaves as QEMU's.
import Foundation
import Testing
@testable import NBD
import Qcow2
import TestSupport
import Synchronization

@Suite("NBD server: hostile clients, limits, exports")
struct NBDServerTests {
    static func export(_ name: String = "", readOnly: Bool = false) -> NBDExport {
        NBDExport(name: name, backend: MemoryBackend(size: 1 << 20, readOnly: readOnly))
    }

    @Test("An option length over 32 MiB closes the connection; another client is still served")
    func hugeOption() throws {
        let server = try TestServer(exports: [Self.export()])
        let bad = try RawClient(server.socket)
        #expect(bad.greet())
        bad.send(be(NBDProtocol.optionMagic) + be(UInt32(99)) + be(UInt32.max))
        #expect(bad.isClosedByServer())
        let good = try RawClient(server.socket)
        #expect(good.greet())
        #expect(good.go("").last == NBDProtocol.OptionReply.ack.rawValue)
    }

    @Test("An unknown option's payload (1 MiB) is skipped and answered NBD_REP_ERR_UNSUP; the client goes on")
    func unknownOption() throws {
        let server = try TestServer(exports: [Self.export()])
        let client = try RawClient(server.socket)
        #expect(client.greet())
        client.option(77, [UInt8](repeating: 7, count: 1 << 20))
        #expect(client.optionReply()?.type == NBDProtocol.OptionReply.errUnsupported.rawValue)
        client.option(NBDProtocol.Option.startTLS.rawValue, [])
        #expect(client.optionReply()?.type == NBDProtocol.OptionReply.errPolicy.rawValue)
        client.option(NBDProtocol.Option.go.rawValue, be(UInt32(5000)))
        #expect(client.optionReply()?.type == NBDProtocol.OptionReply.errInvalid.rawValue)
        #expect(client.go("nope").last == NBDProtocol.OptionReply.errUnknown.rawValue)
        client.option(NBDProtocol.Option.abort.rawValue, [])
        #expect(client.optionReply()?.type == NBDProtocol.OptionReply.ack.rawValue)
        #expect(client.isClosedByServer())
    }

    @Test("Unknown client flags, a bad option magic, a bad request magic: the connection closes")
    func protocolViolations() throws {
        let server = try TestServer(exports: [Self.export()])
        let flags = try RawClient(server.socket)
        #expect(flags.greet(flags: 0x80))
        #expect(flags.isClosedByServer())
        let magic = try RawClient(server.socket)
        #expect(magic.greet())
        magic.send([UInt8](repeating: 0x41, count: 16))
        #expect(magic.isClosedByServer())
        let request = try RawClient(server.socket)
        #expect(request.greet())
        #expect(request.go("").last == NBDProtocol.OptionReply.ack.rawValue)
        request.send([UInt8](repeating: 0, count: 28))
        #expect(request.isClosedByServer())
    }

    @Test("A client that stalls in the handshake is dropped; another one is served meanwhile")
    func stalledHandshake() throws {
        var configuration = NBDServerConfiguration()
        configuration.handshakeTimeout = 1
        let server = try TestServer(configuration: configuration, exports: [Self.export()])
        let stalled = try RawClient(server.socket)
        #expect(stalled.greet())
        stalled.send(be(NBDProtocol.optionMagic))  // half an option header, then nothing
        let good = try RawClient(server.socket)
        #expect(good.greet())
        #expect(good.go("").last == NBDProtocol.OptionReply.ack.rawValue)
        #expect(stalled.isClosedByServer())
    }

    @Test("The limit is on the whole handshake: a client that trickles a byte at a time is dropped too")
    func tricklingHandshake() throws {
        var configuration = NBDServerConfiguration()
        configuration.handshakeTimeout = 1
        let server = try TestServer(configuration: configuration, exports: [Self.export()])
        let client = try RawClient(server.socket)
        #expect(client.greet())
        // An unknown option whose 60 payload bytes come one per 100 ms: no
        // read waits long, the whole option takes 6 s.
        client.send(be(NBDProtocol.optionMagic) + be(UInt32(0x7777)) + be(UInt32(60)))
        var dropped = false
        for _ in 0..<60 where !dropped {
            usleep(100_000)
            client.send([0])
            dropped = client.hasEnded()
        }
        #expect(dropped)
    }

    @Test("Bad requests get EINVAL and the connection goes on; an oversized write is answered, then dropped")
    func badRequests() throws {
        let server = try TestServer(exports: [Self.export("ro", readOnly: true)])
        let client = try RawClient(server.socket)
        #expect(client.greet())
        #expect(client.go("ro").last == NBDProtocol.OptionReply.ack.rawValue)
        client.request(.write, cookie: 7, offset: 0, length: 4, payload: [1, 2, 3, 4])
        #expect(client.simpleReply()?.error == NBDErrorCode.invalid.rawValue)
        client.request(.read, cookie: 8, offset: 1 << 20, length: 1)
        #expect(client.simpleReply()?.error == NBDErrorCode.invalid.rawValue)
        client.send(be(NBDProtocol.requestMagic) + be(UInt16(0)) + be(UInt16(99)) + be(UInt64(9)) + be(UInt64(0)) + be(UInt32(0)))
        let unknown = client.simpleReply()
        #expect(unknown?.error == NBDErrorCode.invalid.rawValue && unknown?.cookie == 9)
        client.request(.read, cookie: 10, offset: 0, length: 4)
        #expect(client.simpleReply()?.error == 0)
        #expect(client.receive(4) == [0, 0, 0, 0])
        client.request(.write, cookie: 11, offset: 0, length: NBDProtocol.maxBufferSize + 1)
        #expect(client.simpleReply()?.error == NBDErrorCode.invalid.rawValue)
        #expect(client.isClosedByServer())
    }

    @Test("With max connections 1 a second client waits until the first leaves")
    func maxConnections() throws {
        var configuration = NBDServerConfiguration()
        configuration.maxConnections = 1
        let server = try TestServer(configuration: configuration, exports: [Self.export()])
        var first: RawClient? = try RawClient(server.socket)
        #expect(first!.greet())
        let second = try RawClient(server.socket)
        first = nil
        #expect(second.greet())
        #expect(second.go("").last == NBDProtocol.OptionReply.ack.rawValue)
    }

    @Test("Exports: duplicates and long names refused; safe removal refused in use; hard removal drops and reports")
    func exportManagement() throws {
        let deleted = Mutex<[String]>([])
        var configuration = NBDServerConfiguration()
        configuration.onExportDeleted = { name in deleted.withLock { $0.append(name) } }
        let server = try TestServer(configuration: configuration, exports: [Self.export("a"), Self.export("b")])
        #expect(throws: NBDServerError("NBD server already has export named 'a'")) {
            try server.server.addExport(Self.export("a"))
        }
        #expect(throws: NBDServerError.self) { try server.server.addExport(Self.export(String(repeating: "x", count: 4097))) }
        try server.server.removeExport(named: "b")
        #expect(deleted.withLock { $0 } == ["b"])
        let client = try RawClient(server.socket)
        #expect(client.greet())
        #expect(client.go("a").last == NBDProtocol.OptionReply.ack.rawValue)
        while server.server.clientCount(exportNamed: "a") == 0 { usleep(1000) }
        #expect(throws: NBDServerError("export 'a' still in use")) { try server.server.removeExport(named: "a") }
        try server.server.removeExport(named: "a", mode: .hard)
        #expect(client.isClosedByServer())
        while deleted.withLock({ $0.count }) < 2 { usleep(1000) }
        #expect(deleted.withLock { $0 } == ["b", "a"])
        #expect(throws: NBDServerError("Export 'a' is not found")) { try server.server.removeExport(named: "a") }
    }
}

@Suite("NBD request checks and meta contexts")
struct NBDRequestPlanTests {
    @Test("QEMU's order of checks")
    func plans() {
        let size: UInt64 = 1 << 20
        func plan(_ type: NBDProtocol.Command, flags: UInt16 = 0, offset: UInt64 = 0, length: UInt32 = 512,
                  readOnly: Bool = false) -> RequestPlan {
            NBDRequest(flags: flags, type: type.rawValue, cookie: 1, offset: offset, length: length)
                .plan(size: size, readOnly: readOnly, structured: true)
        }
        #expect(plan(.disconnect, flags: 0xffff, offset: .max).disconnect)
        #expect(plan(.read, length: NBDProtocol.maxBufferSize + 1).refusal?.hasPrefix("len (") == true)
        #expect(plan(.read, length: NBDProtocol.maxBufferSize + 1).disconnect == false)
        #expect(plan(.write, length: NBDProtocol.maxBufferSize + 1).disconnect)
        #expect(plan(.write, readOnly: true) == RequestPlan(payload: 512, refusal: "Export is read-only"))
        #expect(plan(.trim, offset: size, length: 1).refusal == "operation past EOF; From: 1048576, Len: 1, Size: 1048576")
        #expect(plan(.write, offset: .max, length: 2).refusal?.hasPrefix("operation past EOF") == true)
        #expect(plan(.read, flags: NBDProtocol.CommandFlags.dontFragment.rawValue).refusal == nil)
        #expect(plan(.writeZeroes, flags: 0x13).refusal == nil)
        #expect(plan(.blockStatus, flags: NBDProtocol.CommandFlags.noHole.rawValue).refusal
                == "unsupported flags for command block status (got 0x2)")
    }

    @Test("Meta-context queries select as QEMU's do")
    func metaContexts() {
        let export = NBDExport(name: "", backend: MemoryBackend(size: 512), allocationDepth: true)
        var set = MetaContextSelection()
        for query in ["base:", "qemu:", "qemu:dirty-bitmap:x", "other:allocation", "base:allocations"] {
            set.add(query: query, of: export, listing: false)
        }
        #expect(set.count == 0)
        var list = MetaContextSelection()
        list.add(query: "qemu:", of: export, listing: true)
        #expect(list.contexts(of: export).map(\.name) == ["qemu:allocation-depth"])
        list.add(query: "base:allocation", of: export, listing: true)
        #expect(list.contexts(of: export).map(\.id) == [0, 1])
        let plain = NBDExport(name: "", backend: MemoryBackend(size: 512))
        #expect(MetaContextSelection.all(of: plain).contexts(of: plain).map(\.name) == ["base:allocation"])
    }

    @Test("qemu:dirty-bitmap: queries select the export's bitmaps by name, all of them only when listing")
    func bitmapMetaContexts() {
        let bitmaps = ["a", "b"].map { name in
            NBDExportBitmap(name: name, owner: ObjectIdentifier(MemoryBackend.self)) {
                DirtyBitmap(name: name, granularity: 65536, size: 512)
            }
        }
        let export = NBDExport(name: "", backend: MemoryBackend(size: 512), bitmaps: bitmaps)
        var set = MetaContextSelection()
        for query in ["qemu:dirty-bitmap:", "qemu:", "qemu:dirty-bitmap:b", "qemu:dirty-bitmap:c"] {
            set.add(query: query, of: export, listing: false)
        }
        #expect(set.contexts(of: export).map(\.name) == ["qemu:dirty-bitmap:b"])
        #expect(set.contexts(of: export).map(\.id) == [3])
        var list = MetaContextSelection()
        list.add(query: "qemu:dirty-bitmap:", of: export, listing: true)
        #expect(list.contexts(of: export).map(\.id) == [2, 3])
        #expect(MetaContextSelection.all(of: export).count == 3)
    }
}

@Suite("NBD server on loopback TCP")
struct NBDInetTests {
    @Test("Listening on 127.0.0.1 port 0: the chosen port is returned and nbdinfo reads the export there")
    func loopback() throws {
        let server = NBDServer()
        defer { server.stop() }
        try server.addExport(NBDExport(name: "tcp", backend: MemoryBackend(size: 3 << 20)))
        let bound = try server.listen(on: .inet(host: "127.0.0.1", port: 0))
        guard case let .inet(host, port)? = bound.first else {
            Issue.record("no inet address bound: \(bound)")
            return
        }
        #expect(host == "127.0.0.1" && port != 0)
        let nbdinfo = try TestTools.program("nbdinfo", package: "libnbd-bin")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: nbdinfo)
        process.arguments = ["--size", "nbd://127.0.0.1:\(port)/tcp"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(text == "\(3 << 20)\n")
    }
}
