import Foundation
import Testing
import BlockGraph
import QemuJSON
@testable import QMP
import TestSupport

/// block-commit through QMP with a live main loop: the events' order around
/// the reply, QMP answering while a slow commit runs, cancel, and quit with a
/// job still running. Images are made by qemu-img.
@Suite struct CommitServiceTests {
    /// base <- mid <- top, 64 MiB, `dataMiB` of 0x55 written into mid.
    final class Chain {
        let directory: String
        var base: String { directory + "/t.qcow2.base" }
        var mid: String { directory + "/t.qcow2.mid" }
        var top: String { directory + "/t.qcow2" }

        init(dataMiB: Int = 1) throws {
            directory = NSTemporaryDirectory() + "qcowkit-commit-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try run("qemu-img", "create", "-q", "-f", "qcow2", base, "64M")
            try run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", mid, "64M")
            try run("qemu-img", "create", "-q", "-f", "qcow2", "-b", mid, "-F", "qcow2", top, "64M")
            try run("qemu-io", "-c", "write -P 0x55 0 \(dataMiB)M", mid)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        func run(_ arguments: String...) throws {
            let process = Process()
            let (executable, resolved) = try TestTools.resolve(arguments)
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = resolved
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw UnixClient.Failure(description: "\(arguments) exited \(process.terminationStatus)")
            }
        }

        /// The service with the three nodes, serving a socket on its own thread.
        func serve() throws -> (ServiceThread, UnixClient) {
            let configuration = try ServeCommandLine.parse([
                "--blockdev", "driver=qcow2,file.driver=file,file.filename=\(base),node-name=base",
                "--blockdev", "driver=qcow2,file.driver=file,file.filename=\(mid),node-name=mid,backing=base",
                "--blockdev", "driver=qcow2,file.driver=file,file.filename=\(top),node-name=top,backing=mid",
                "--chardev", "socket,id=c,path=\(directory)/qmp.sock,server=on,wait=off", "--monitor", "c",
            ])
            let thread = try ServiceThread(configuration)
            let client = try UnixClient(path: directory + "/qmp.sock")
            _ = try client.next()
            _ = try client.execute(#"{"execute":"qmp_capabilities"}"#)
            return (thread, client)
        }
    }

    final class ServiceThread: @unchecked Sendable {
        let service: QMPService
        private let done = DispatchSemaphore(value: 0)

        init(_ configuration: ServeConfiguration) throws {
            service = try QMPService(version: QMPVersion(package: "test"))
            try service.configure(configuration)
            Thread { [self] in
                service.serve()
                done.signal()
            }.start()
        }

        func waitForExit() -> Bool { done.wait(timeout: .now() + 60) == .success }
    }

    private func statusEvents(_ events: [JSONValue]) -> [String] {
        events.map { event in
            if event["event"] == .string("JOB_STATUS_CHANGE") { return event["data"]?["status"]?.stringValue ?? "?" }
            return event["event"]?.stringValue ?? "?"
        }
    }

    /// Reads events until the job's `null`.
    private func eventsUntilNull(_ client: UnixClient) throws -> [JSONValue] {
        var events: [JSONValue] = []
        while true {
            let message = try client.next(seconds: 60)
            events.append(message)
            if message["data"]?["status"] == .string("null") { return events }
        }
    }

    @Test func eventsAroundTheReplyInQEMUsOrder() throws {
        let chain = try Chain()
        let (thread, client) = try chain.serve()
        var early: [JSONValue] = []
        let reply = try client.execute("""
            { 'execute': 'block-commit', 'arguments': { 'job-id': 'commit0', 'device': 'top',
              'base': '\(chain.base)', 'top': '\(chain.mid)' } }
            """, events: &early)
        #expect(reply == .object([("return", .object([]))]))
        #expect(statusEvents(early) == ["created", "running"])
        #expect(early.first?.qemuJSON() .contains(#""data": {"status": "created", "id": "commit0"}"#) == true)
        let later = try eventsUntilNull(client)
        #expect(statusEvents(later) == ["waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null"])
        let completed = later.first { $0["event"] == .string("BLOCK_JOB_COMPLETED") }
        #expect(completed?["data"]?.qemuJSON()
            == #"{"device": "commit0", "len": 67108864, "offset": 67108864, "speed": 0, "type": "commit"}"#)

        let nodes = try client.execute(#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#)
        let topEntry = nodes["return"]?.arrayValue?.first { $0["node-name"] == .string("top") }
        #expect(topEntry?["backing_file"] == .string(chain.base))
        #expect(topEntry?["image"]?["backing-image"] == nil)
        _ = try client.execute(#"{"execute":"quit"}"#)
        #expect(thread.waitForExit())
    }

    @Test func streamIntoTopDropsMid() throws {
        let chain = try Chain()
        let (thread, client) = try chain.serve()
        var events: [JSONValue] = []
        // No job-id and no drive holding the node: QEMU's empty, invalid id.
        #expect(try client.execute(#"{"execute":"block-stream","arguments":{"device":"top","base-node":"base"}}"#)["error"]?["desc"]
            == .string("Invalid job ID ''"))
        #expect(try client.execute(#"{"execute":"block-stream","arguments":{"device":"top","bottom":"mid"}}"#)["error"] != nil)
        let reply = try client.execute(#"{"execute":"block-stream","arguments":{"job-id":"s1","device":"top","base-node":"base"}}"#,
                                       events: &events)
        #expect(reply == .object([("return", .object([]))]))
        events += try eventsUntilNull(client)
        #expect(statusEvents(events) == ["created", "running", "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null"])
        #expect(events.allSatisfy { $0["data"]?["id"] == .string("s1") || $0["data"]?["device"] == .string("s1") })
        #expect(events.first { $0["event"] == .string("BLOCK_JOB_COMPLETED") }?["data"]?["type"] == .string("stream"))
        let nodes = try client.execute(#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#)
        #expect(nodes["return"]?.arrayValue?.first { $0["node-name"] == .string("top") }?["backing_file"] == .string(chain.base))
        _ = try client.execute(#"{"execute":"quit"}"#)
        #expect(thread.waitForExit())
    }

    @Test func qmpAnswersWhileASlowCommitRuns() throws {
        let chain = try Chain(dataMiB: 8)
        let (thread, client) = try chain.serve()
        var events: [JSONValue] = []
        // 1 MiB/s over 8 MiB of data: several seconds of work.
        let reply = try client.execute(#"{"execute":"block-commit","arguments":{"job-id":"slow","device":"top","top-node":"mid","speed":1048576}}"#,
                                       events: &events)
        #expect(reply["return"] != nil)
        for _ in 0..<5 {
            let started = Date()
            let jobs = try client.execute(#"{"execute":"query-block-jobs"}"#, events: &events)
            #expect(Date().timeIntervalSince(started) < 2)
            #expect(jobs["return"]?.arrayValue?.first?["device"] == .string("slow"))
            #expect(jobs["return"]?.arrayValue?.first?["speed"] == .int(1048576))
        }
        #expect(try client.execute(#"{"execute":"job-pause","arguments":{"id":"slow"}}"#, events: &events)["return"] != nil)
        let paused = try client.execute(#"{"execute":"query-jobs"}"#, events: &events)
        #expect(paused["return"]?.arrayValue?.first?["id"] == .string("slow"))
        #expect(try client.execute(#"{"execute":"job-resume","arguments":{"id":"slow"}}"#, events: &events)["return"] != nil)
        #expect(try client.execute(#"{"execute":"block-job-cancel","arguments":{"device":"slow"}}"#, events: &events)["return"] != nil)
        // A job idle in its rate-limit sleep ends within the command (as QEMU
        // runs its coroutine to the exit), so the events may all precede the
        // reply; one busy in I/O ends after it.
        if !events.contains(where: { $0["data"]?["status"] == .string("null") }) {
            events += try eventsUntilNull(client)
        }
        let names = statusEvents(events)
        #expect(names.contains("BLOCK_JOB_CANCELLED"))
        #expect(names.last == "null")
        // Nothing left behind, and the chain is unchanged.
        #expect(try client.execute(#"{"execute":"query-jobs"}"#) == .object([("return", .array([]))]))
        let nodes = try client.execute(#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#)
        #expect(nodes["return"]?.arrayValue?.first { $0["node-name"] == .string("top") }?["backing_file"] == .string(chain.mid))
        _ = try client.execute(#"{"execute":"quit"}"#)
        #expect(thread.waitForExit())
    }

    @Test func quitWithAJobRunningCancelsItAndClosesCleanly() throws {
        let chain = try Chain(dataMiB: 8)
        let (thread, client) = try chain.serve()
        var events: [JSONValue] = []
        _ = try client.execute(#"{"execute":"block-commit","arguments":{"job-id":"j","device":"top","top-node":"mid","speed":1048576}}"#,
                               events: &events)
        try client.send(#"{"execute":"quit"}"#)
        var messages: [JSONValue] = []
        while let message = try? client.next(seconds: 30) { messages.append(message) }
        #expect(messages.first == .object([("return", .object([]))]))
        #expect(messages.dropFirst().first?["event"] == .string("SHUTDOWN"))
        #expect(statusEvents(Array(messages.dropFirst(2))).suffix(1) == ["null"])
        #expect(thread.waitForExit())
        // Every image closed cleanly: qemu-img check finds nothing.
        for image in [chain.base, chain.mid, chain.top] { try chain.run("qemu-img", "check", "-q", image) }
    }

    @Test func refusalsKeepQEMUsClassesAndWords() throws {
        let chain = try Chain()
        let (thread, client) = try chain.serve()
        func error(_ request: String) throws -> JSONValue? { try client.execute(request)["error"] }
        #expect(try error(#"{"execute":"block-commit","arguments":{"device":"nope"}}"#)
            == .object([("class", .string("DeviceNotFound")), ("desc", .string("Device 'nope' not found"))]))
        #expect(try error(#"{"execute":"block-commit","arguments":{"device":"top","top-node":"mid"}}"#)?["desc"]
            == .string("Invalid job ID ''"))
        #expect(try error(#"{"execute":"block-commit","arguments":{"device":"top","top-node":"mid","job-id":"j","speed":-1}}"#)?["desc"]
            == .string("Parameter 'speed' expects a non-negative value"))
        #expect(try error(#"{"execute":"block-commit","arguments":{"device":"top","on-error":"bogus"}}"#)?["desc"]
            == .string("Parameter 'on-error' does not accept value 'bogus'"))
        #expect(try error(#"{"execute":"blockdev-del","arguments":{"node-name":"mid"}}"#)?["class"] == .string("GenericError"))
        #expect(try error(#"{"execute":"job-dismiss","arguments":{"id":"j"}}"#)?["desc"] == .string("Job not found"))
        #expect(try error(#"{"execute":"block-job-dismiss","arguments":{"id":"j"}}"#)
            == .object([("class", .string("DeviceNotActive")), ("desc", .string("Block job 'j' not found"))]))
        _ = try client.execute(#"{"execute":"quit"}"#)
        #expect(thread.waitForExit())
    }
}
