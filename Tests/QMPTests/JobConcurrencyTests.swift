// Issue 4: two jobs at once on different chains, and second jobs refused on
// busy nodes, through QMP, replayed on qemu-storage-daemon 7.2 and on
// QcowKit's service: every reply must be QEMU's (progress, which depends on
// timing, left out of the comparison). Two chains a-* and b-*, each
// base <- mid <- top.
import Foundation
import Testing
import QemuJSON
@testable import QMP

@Suite("concurrent and refused jobs over QMP, against qemu-storage-daemon 7.2")
struct JobConcurrencyTests {
    static let steps: [String] = [
        #"{"execute":"block-commit","arguments":{"job-id":"j1","device":"a-top","top-node":"a-mid","speed":1}}"#,
        // len is known as soon as the job exists.
        #"{"execute":"query-block-jobs"}"#,
        // Second jobs touching chain a: refused, with QEMU's words.
        #"{"execute":"block-commit","arguments":{"job-id":"j2","device":"a-top","top-node":"a-mid"}}"#,
        #"{"execute":"block-commit","arguments":{"job-id":"j2","device":"a-top"}}"#,
        #"{"execute":"block-commit","arguments":{"job-id":"j2","device":"a-mid"}}"#,
        #"{"execute":"block-stream","arguments":{"job-id":"j2","device":"a-top"}}"#,
        #"{"execute":"block-stream","arguments":{"job-id":"j2","device":"a-top","base-node":"a-mid"}}"#,
        #"{"execute":"block-stream","arguments":{"job-id":"j2","device":"a-mid"}}"#,
        #"{"execute":"blockdev-del","arguments":{"node-name":"a-mid"}}"#,
        #"{"execute":"blockdev-del","arguments":{"node-name":"a-top"}}"#,
        // The id is taken, whatever the node.
        #"{"execute":"block-commit","arguments":{"job-id":"j1","device":"b-top","top-node":"b-mid"}}"#,
        // A second job on chain b runs beside the first.
        #"{"execute":"block-stream","arguments":{"job-id":"j2","device":"b-top","speed":1}}"#,
        #"{"execute":"query-block-jobs"}"#,
        #"{"execute":"query-jobs"}"#,
        #"{"execute":"block-commit","arguments":{"job-id":"j3","device":"b-top"}}"#,
        #"{"execute":"block-job-set-speed","arguments":{"device":"j2","speed":0}}"#,
        #"{"execute":"job-pause","arguments":{"id":"j1"}}"#,
        #"{"execute":"block-job-cancel","arguments":{"device":"j1"}}"#,
        #"{"execute":"block-job-cancel","arguments":{"device":"j1","force":true}}"#,
    ]

    /// The replies, with what depends on timing (progress, busy) removed.
    static func replies(_ kind: ComparedService.Kind) throws -> [String] {
        let scratch = try HostileScratch("concurrent-\(kind)")
        var blockdevs: [String] = []
        for chain in ["a", "b"] {
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "\(chain)-base.qcow2", "64M")
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "\(chain)-base.qcow2", "-F", "qcow2", "\(chain)-mid.qcow2", "64M")
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "\(chain)-mid.qcow2", "-F", "qcow2", "\(chain)-top.qcow2", "64M")
            try scratch.run("qemu-io", "-c", "write -P 0x55 0 4M", "\(chain)-mid.qcow2")
            var backing = ""
            for layer in ["base", "mid", "top"] {
                blockdevs.append("driver=qcow2,file.driver=file,file.filename=\(scratch.file("\(chain)-\(layer).qcow2")),node-name=\(chain)-\(layer)\(backing)")
                backing = ",backing=\(chain)-\(layer)"
            }
        }
        let service = try ComparedService(kind, blockdevs: blockdevs, socketPath: scratch.file("qmp.sock"))
        defer { service.stop() }
        let client = try service.connect()
        var events: [JSONValue] = []
        var replies: [String] = []
        for step in steps {
            let reply = try client.execute(step, events: &events)
            replies.append(withoutTiming(reply).qemuJSON())
        }
        // Both jobs end: j1 was cancelled, j2 is cancelled here.
        _ = try client.execute(#"{"execute":"job-cancel","arguments":{"id":"j2"}}"#, events: &events)
        while events.filter({ $0["data"]?["status"] == .string("null") }).count < 2 { events.append(try client.next()) }
        replies.append(events.compactMap { event -> String? in
            guard let name = event["event"]?.stringValue, name.hasPrefix("BLOCK_JOB_") else { return nil }
            return "\(name) \(event["data"]?["device"]?.stringValue ?? "?")"
        }.sorted().joined(separator: ", "))
        return replies
    }

    /// offset and busy vary with timing; the rest must not.
    static func withoutTiming(_ value: JSONValue) -> JSONValue {
        switch value {
        case let .object(members):
            return .object(members.filter { $0.0 != "offset" && $0.0 != "busy" && $0.0 != "current-progress" }
                .map { ($0.0, withoutTiming($0.1)) })
        case let .array(items): return .array(items.map(withoutTiming))
        default: return value
        }
    }

    @Test func repliesAreQEMUs() async throws {
        async let qemuReplies = Self.replies(.qemu)
        let ours = try Self.replies(.qcowkit)
        let theirs = try await qemuReplies
        #expect(ours.count == theirs.count)
        for (index, (mine, qemu)) in zip(ours, theirs).enumerated() where mine != qemu {
            Issue.record("step \(index) \(index < Self.steps.count ? Self.steps[index] : "events"):\n  QEMU: \(qemu)\n  ours: \(mine)")
        }
        // Pinned: the refusals' words and the live len.
        func error(_ desc: String) -> String { #"{"error": {"class": "GenericError", "desc": "\#(desc)"}}"# }
        #expect(ours[2] == error("Need a root block node"))
        #expect(ours[5] == error("Node 'a-top' is busy: block device is in use by block job: commit"))
        #expect(ours[7] == error("Node 'a-mid' is busy: block device is in use by block job: commit"))
        #expect(ours[8] == error("Node a-mid is in use"))
        #expect(ours[10] == error("Job ID 'j1' already in use"))
        #expect(ours[1].contains(#""len": 67108864"#))
        #expect(ours[12].contains(#""device": "j2", "#) && ours[12].contains(#""device": "j1", "#))
        #expect(ours[17] == error("The block job for device 'j1' is currently paused"))
        #expect(ours.last == "BLOCK_JOB_CANCELLED j1, BLOCK_JOB_CANCELLED j2")
    }
}
