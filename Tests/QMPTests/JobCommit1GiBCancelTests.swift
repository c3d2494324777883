// Issue 4: a commit of a 1 GiB range interrupted by cancel, through QMP, on
// QcowKit's service and on qemu-storage-daemon 7.2. The intermediate image
// allocates all of its 1 GiB (metadata preallocation: cheap to make, every
// cluster allocated), so the commit has 1 GiB to copy; a speed limit keeps
// it running while query-block-jobs shows the offset growing below len;
// then cancel. Afterwards every image checks clean, the top's guest view is
// what a copy made before shows, and the backing links are as before.
import Foundation
import Testing
import QemuJSON
@testable import QMP

@Suite("a 1 GiB commit interrupted by cancel")
struct JobCommit1GiBCancelTests {
    static let gib: Int64 = 1 << 30
    static let speed: Int64 = 32 << 20

    struct Outcome {
        var offsets: [Int64] = []
        var lens: [Int64] = []
        var cancelledData: JSONValue?
        var statuses: [String] = []
    }

    /// base <- mid (1 GiB allocated) <- top, with relative backing names, so
    /// that a copy of the directory is a chain of its own.
    static func makeChain(in scratch: HostileScratch) throws {
        try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "1G")
        try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", "mid.qcow2", "1G")
        try scratch.run("qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2")
        try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2", "1G")
        try scratch.run("qemu-io", "-c", "write -P 0x5a 0 1M", "-c", "write -P 0xa5 1023M 1M", "mid.qcow2")
        try scratch.run("qemu-io", "-c", "write -P 0x77 512M 64k", "top.qcow2")
    }

    static func run(_ kind: ComparedService.Kind) throws -> (Outcome, HostileScratch) {
        let scratch = try HostileScratch("commit1g-\(kind)")
        try makeChain(in: scratch)
        // The "before" copy: the same chain in a directory of its own.
        try FileManager.default.createDirectory(atPath: scratch.file("before"), withIntermediateDirectories: false)
        try scratch.run("cp", "--sparse=always", "base.qcow2", "mid.qcow2", "top.qcow2", "before/")

        let service = try ComparedService(kind, blockdevs: ["base", "mid", "top"].enumerated().map { index, layer in
            "driver=qcow2,file.driver=file,file.filename=\(scratch.file(layer + ".qcow2")),node-name=\(layer)"
                + (index == 0 ? "" : ",backing=\(index == 1 ? "base" : "mid")")
        }, socketPath: scratch.file("qmp.sock"))
        defer { service.stop() }
        let client = try service.connect()
        var events: [JSONValue] = []
        var outcome = Outcome()
        let reply = try client.execute(#"{"execute":"block-commit","arguments":{"job-id":"c1g","device":"top","top-node":"mid","base-node":"base","speed":\#(speed)}}"#,
                                       events: &events)
        guard reply == .object([("return", .object([]))]) else { throw HostileFailure("block-commit: \(reply.qemuJSON())") }
        for _ in 0..<4 {
            let jobs = try client.execute(#"{"execute":"query-block-jobs"}"#, events: &events)
            guard let job = jobs["return"]?.arrayValue?.first else { throw HostileFailure("no job: \(jobs.qemuJSON())") }
            outcome.offsets.append(job["offset"]?.int64Value ?? -1)
            outcome.lens.append(job["len"]?.int64Value ?? -1)
            usleep(200_000)
        }
        #expect(try client.execute(#"{"execute":"job-cancel","arguments":{"id":"c1g"}}"#, events: &events) == .object([("return", .object([]))]))
        while !events.contains(where: { $0["data"]?["status"] == .string("null") }) { events.append(try client.next()) }
        outcome.cancelledData = events.first { $0["event"] == .string("BLOCK_JOB_CANCELLED") }?["data"]
        outcome.statuses = events.compactMap { $0["event"] == .string("JOB_STATUS_CHANGE") ? $0["data"]?["status"]?.stringValue : nil }
        #expect(try client.execute(#"{"execute":"query-block-jobs"}"#) == .object([("return", .array([]))]))
        service.stop()
        return (outcome, scratch)
    }

    private static func backing(_ scratch: HostileScratch, _ image: String) throws -> String? {
        let info = try scratch.run("qemu-img", "info", "--output=json", image)
        guard case let .success(value) = JSONValue.parse(info) else { throw HostileFailure("qemu-img info: \(info)") }
        return value["backing-filename"]?.stringValue
    }

    @Test(arguments: ComparedService.Kind.allCases)
    func cancelLeavesEveryImageAsItWas(kind: ComparedService.Kind) throws {
        let (outcome, scratch) = try Self.run(kind)
        // Running, under len, and growing.
        #expect(outcome.lens.allSatisfy { $0 == Self.gib }, "len \(outcome.lens)")
        #expect(outcome.offsets.allSatisfy { $0 >= 0 && $0 < Self.gib }, "offsets \(outcome.offsets)")
        #expect(zip(outcome.offsets, outcome.offsets.dropFirst()).allSatisfy { $0 <= $1 }, "offsets \(outcome.offsets)")
        #expect((outcome.offsets.last ?? 0) > (outcome.offsets.first ?? 0), "offsets \(outcome.offsets)")
        // QEMU's event: these members, in this order, for the commit cut short.
        let data = try #require(outcome.cancelledData)
        guard case let .object(members) = data else { throw HostileFailure("BLOCK_JOB_CANCELLED data: \(data.qemuJSON())") }
        #expect(members.map(\.0) == ["device", "len", "offset", "speed", "type"])
        #expect(data["device"] == .string("c1g") && data["type"] == .string("commit"))
        #expect(data["len"] == .int(Self.gib) && data["speed"] == .int(Self.speed))
        let offset = data["offset"]?.int64Value ?? -1
        #expect(offset >= (outcome.offsets.last ?? 0) && offset < Self.gib / 4, "stopped at \(offset)")
        #expect(outcome.statuses == ["created", "running", "aborting", "concluded", "null"])

        for image in ["base.qcow2", "mid.qcow2", "top.qcow2"] {
            try scratch.run("qemu-img", "check", "-q", image)
        }
        try scratch.run("qemu-img", "compare", "-q", "top.qcow2", "before/top.qcow2")
        try scratch.run("qemu-img", "compare", "-q", "mid.qcow2", "before/mid.qcow2")
        #expect(try Self.backing(scratch, "top.qcow2") == "mid.qcow2")
        #expect(try Self.backing(scratch, "mid.qcow2") == "base.qcow2")
        #expect(try Self.backing(scratch, "base.qcow2") == nil)
    }
}
