// Hostile and careless clients of QcowKit's service on a unix socket: many
// at once, ones that vanish mid-message or mid-command, a
// flood of pipelined requests whose replies are not read, and one so far
// behind that the drop rule ends it. The others must be served throughout,
// and the service must keep running.
import Foundation
import Testing
import QemuJSON
@testable import QMP

@Suite("hostile QMP clients")
struct HostileClientTests {
    private static func service() throws -> ComparedService {
        let scratch = try HostileScratch("hostile-clients")
        let service = try ComparedService(.qcowkit, socketPath: scratch.file("qmp.sock"))
        service.keepAlive = scratch
        return service
    }

    /// Closes the client's socket at once. A unix socket closed with
    /// replies unread in it gives the service ECONNRESET, and EPIPE on its
    /// next write, while it may still be writing.
    private static func vanish(_ fd: Int32) {
        _ = shutdown(fd, Int32(SHUT_RDWR))
    }

    /// A service that still answers a fresh client, quickly.
    private static func expectServing(_ service: ComparedService, _ note: Comment) throws {
        let started = Date()
        let probe = try service.connect()
        #expect(try probe.execute(#"{"execute":"query-jobs","id":"probe"}"#) == .object([("return", .array([])), ("id", .string("probe"))]), note)
        #expect(Date().timeIntervalSince(started) < 5, note)
    }

    @Test func manyClientsAtOnceEachGetTheirOwnReplies() throws {
        let service = try Self.service()
        defer { service.stop() }
        let clients = 12, requests = 300
        let failures = LockedCount()
        DispatchQueue.concurrentPerform(iterations: clients) { index in
            do {
                let client = try service.connect()
                // Pipelined in batches, ids naming the client.
                for batch in stride(from: 0, to: requests, by: 50) {
                    try client.send((batch..<batch + 50).map { #"{"execute":"query-version","id":"c\#(index)-\#($0)"}"# }.joined())
                    for n in batch..<batch + 50 {
                        let reply = try client.next()
                        if reply["id"] != .string("c\(index)-\(n)") || reply["return"]?["package"] != .string("test") {
                            failures.add()
                        }
                    }
                }
            } catch {
                failures.add()
            }
        }
        #expect(failures.value == 0)
        try Self.expectServing(service, "after \(clients) clients")
    }

    @Test func clientsThatVanishMidMessageOrMidCommandDisturbNoOne() throws {
        let service = try Self.service()
        defer { service.stop() }
        let bystander = try service.connect()

        // Half a request, then gone.
        do {
            let half = try service.connect()
            try half.send(#"{"execute":"query-jobs","arguments":{"#)
        }
        // Half a request, then gone at once.
        do {
            let half = try service.connect()
            try half.send(#"{"execute":"query-ver"#)
            Self.vanish(half.fd)
        }
        // Requests whose replies are still being written when the peer goes.
        for _ in 0..<5 {
            let gone = try service.connect()
            try gone.send(String(repeating: #"{"execute":"query-commands"}"#, count: 200))
            Self.vanish(gone.fd)
        }
        // Before the greeting is even read.
        for _ in 0..<5 {
            let early = try RawQMPClient(path: service.socketPath)
            Self.vanish(early.fd)
        }
        #expect(try bystander.execute(#"{"execute":"query-jobs","id":1}"#) == .object([("return", .array([])), ("id", .int(1))]))
        try Self.expectServing(service, "after the vanishing clients")
    }

    @Test func aClientThatStartsAJobAndVanishesLeavesTheJobToTheOthers() throws {
        let chain = try CommitServiceTests.Chain(dataMiB: 4)
        let (thread, bystander) = try chain.serve()
        do {
            let starter = try UnixClient(path: chain.directory + "/qmp.sock")
            _ = try starter.next()
            _ = try starter.execute(#"{"execute":"qmp_capabilities"}"#)
            try starter.send(#"{"execute":"block-commit","arguments":{"job-id":"orphan","device":"top","top-node":"mid","speed":1048576}}"#)
            Self.vanish(starter.fd)
        }
        // The job runs on; its events reach the client that stayed.
        var events: [JSONValue] = []
        var status: JSONValue?
        for _ in 0..<100 {
            status = try bystander.execute(#"{"execute":"query-jobs"}"#, events: &events)["return"]?.arrayValue?.first?["status"]
            if status != nil { break }
            usleep(10_000)
        }
        #expect(status == .string("running"))
        #expect(try bystander.execute(#"{"execute":"job-cancel","arguments":{"id":"orphan"}}"#, events: &events) == .object([("return", .object([]))]))
        while !events.contains(where: { $0["data"]?["status"] == .string("null") }) { events.append(try bystander.next()) }
        #expect(events.contains { $0["event"] == .string("BLOCK_JOB_CANCELLED") && $0["data"]?["device"] == .string("orphan") })
        _ = try bystander.execute(#"{"execute":"quit"}"#)
        #expect(thread.waitForExit())
        for image in [chain.base, chain.mid, chain.top] { try chain.run("qemu-img", "check", "-q", image) }
    }

    @Test func aFloodOfUnreadRepliesIsThrottledAndThenDeliveredInFull() throws {
        let service = try Self.service()
        defer { service.stop() }
        let flooder = try service.connect()
        let count = 100_000
        let flood = (0..<count).map { #"{"execute":"query-jobs","id":\#($0)}"# }.joined()
        // The writer blocks once the service stops reading (its output
        // queue is full); nothing reads the replies yet.
        let written = DispatchSemaphore(value: 0)
        let writeFailures = LockedCount()
        let flooderFD = flooder.fd
        Thread {
            do { try UnixClient.send(flood, to: flooderFD) } catch { writeFailures.add() }
            written.signal()
        }.start()
        usleep(300_000)
        // Meanwhile, another client is served at once.
        for _ in 0..<3 { try Self.expectServing(service, "during the flood") }

        // Now every reply arrives, in order.
        var next = 0
        while next < count {
            let reply = try flooder.next(seconds: 30)
            guard reply == .object([("return", .array([])), ("id", .int(Int64(next)))]) else {
                Issue.record("reply \(next): \(reply.qemuJSON())")
                break
            }
            next += 1
        }
        #expect(next == count)
        #expect(written.wait(timeout: .now() + 30) == .success)
        #expect(writeFailures.value == 0)
    }

    @Test func aClientFarBehindIsDroppedAndOthersAreNot() throws {
        let service = try Self.service()
        defer { service.stop() }
        let bystander = try service.connect()
        let laggard = try service.connect()
        // One reply of about 66 MiB (each 0x7F comes back as "\u007F"):
        // beyond the 64 MiB a client may have queued, so the service drops
        // the client instead of holding it.
        var request = Array(#"{"execute":"query-jobs","id":""#.utf8)
        request += [UInt8](repeating: 0x7F, count: 11 << 20)
        request += Array(#""}"#.utf8)
        let raw = laggard.fd
        var offset = 0
        while offset < request.count {
            let n = request[offset...].withUnsafeBytes { Foundation.send(raw, $0.baseAddress, min($0.count, 1 << 20), Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { break }
            offset += n
        }
        #expect(laggard.isClosedByPeer(seconds: 30))
        #expect(try bystander.execute(#"{"execute":"query-jobs","id":"still"}"#) == .object([("return", .array([])), ("id", .string("still"))]))
        try Self.expectServing(service, "after dropping a client")
    }
}

/// A counter several threads add to.
final class LockedCount: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
