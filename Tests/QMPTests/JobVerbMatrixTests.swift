// Every job verb in every state a client can hold a job in, through QMP,
// against qemu-storage-daemon 7.2 and QcowKit's service: the reply (QEMU's
// refusal text, or success) and the state the job settles in. Jobs are
// commits of a small chain; `running` and `paused` ones are slowed to a
// byte per second, `ready`/`standby` ones are active commits, `pending` and
// `concluded` ones run with auto-finalize=false / auto-dismiss=false. A job
// that accepted a verb is replaced by a fresh one (on a fresh copy of the
// chain) before the next verb.
import Foundation
import Testing
import QemuJSON
@testable import QMP

@Suite("job verbs by state over QMP, against qemu-storage-daemon 7.2")
struct JobVerbMatrixTests {
    enum Target: String, CaseIterable { case running, paused, ready, standby, pending, concluded }

    /// The verbs, each with its arguments for job `id` and the states a job
    /// settles in after the verb was accepted (nil: gone).
    static let verbs: [(name: String, arguments: @Sendable (String) -> String, settled: Set<String?>)] = [
        ("job-pause", { #"{"id":"\#($0)"}"# }, ["paused", "standby"]),
        ("job-resume", { #"{"id":"\#($0)"}"# }, ["running", "ready"]),
        ("job-cancel", { #"{"id":"\#($0)"}"# }, [nil, "concluded"]),
        ("job-complete", { #"{"id":"\#($0)"}"# }, [nil, "concluded", "standby"]),
        ("job-finalize", { #"{"id":"\#($0)"}"# }, [nil, "concluded"]),
        ("job-dismiss", { #"{"id":"\#($0)"}"# }, [nil]),
        ("block-job-set-speed", { #"{"device":"\#($0)","speed":1048576}"# }, ["running", "paused", "ready", "standby"]),
        ("block-job-pause", { #"{"device":"\#($0)"}"# }, ["paused", "standby"]),
        ("block-job-resume", { #"{"device":"\#($0)"}"# }, ["running", "ready"]),
        ("block-job-cancel", { #"{"device":"\#($0)"}"# }, [nil, "concluded"]),
        ("block-job-complete", { #"{"device":"\#($0)"}"# }, [nil, "concluded", "standby"]),
        ("block-job-finalize", { #"{"id":"\#($0)"}"# }, [nil, "concluded"]),
        ("block-job-dismiss", { #"{"id":"\#($0)"}"# }, [nil]),
    ]

    /// One service with a supply of fresh chains, added by blockdev-add.
    final class Lab {
        let scratch: HostileScratch
        let service: ComparedService
        let client: UnixClient
        private var chains = 0
        private var jobs = 0

        init(_ kind: ComparedService.Kind) throws {
            scratch = try HostileScratch("verbs-\(kind)")
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "64M")
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2", "64M")
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2", "64M")
            try scratch.run("qemu-io", "-c", "write -P 0x55 0 1M", "mid.qcow2")
            try scratch.run("qemu-io", "-c", "write -P 0x66 1M 64k", "top.qcow2")
            service = try ComparedService(kind, socketPath: scratch.file("qmp.sock"))
            client = try service.connect()
        }

        /// Every event seen, in order.
        private(set) var events: [JSONValue] = []

        func execute(_ command: String, _ arguments: String) throws -> JSONValue {
            try client.execute(#"{"execute":"\#(command)","arguments":\#(arguments)}"#, events: &events)
        }

        /// A copy of the template chain as nodes cN-base <- cN-mid <- cN-top.
        func freshChain() throws -> String {
            chains += 1
            let name = "c\(chains)"
            let directory = scratch.file(name)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var backing = ""
            for layer in ["base", "mid", "top"] {
                try FileManager.default.copyItem(atPath: scratch.file("\(layer).qcow2"), toPath: "\(directory)/\(layer).qcow2")
                let reply = try execute("blockdev-add", #"{"driver":"qcow2","node-name":"\#(name)-\#(layer)","file":{"driver":"file","filename":"\#(directory)/\#(layer).qcow2"}\#(backing)}"#)
                guard reply["return"] != nil else { throw HostileFailure("blockdev-add \(layer): \(reply.qemuJSON())") }
                backing = #","backing":"\#(name)-\#(layer)""#
            }
            return name
        }

        func status(_ id: String) throws -> String? {
            let jobs = try client.execute(#"{"execute":"query-jobs"}"#, events: &events)["return"]?.arrayValue ?? []
            return jobs.first { $0["id"] == .string(id) }?["status"]?.stringValue
        }

        /// Polls until the job's status is in `wanted`; returns the last seen.
        @discardableResult
        func wait(_ id: String, for wanted: Set<String?>, seconds: Double = 10) throws -> String? {
            let deadline = Date().addingTimeInterval(seconds)
            var last = try status(id)
            while !wanted.contains(last) && Date() < deadline {
                usleep(5_000)
                last = try status(id)
            }
            return last
        }

        /// A new job held in `target`.
        func job(in target: Target) throws -> String {
            jobs += 1
            let id = "j\(jobs)"
            let chain = try freshChain()
            let arguments: String
            switch target {
            case .running, .paused:
                arguments = #""device":"\#(chain)-top","top-node":"\#(chain)-mid","base-node":"\#(chain)-base","speed":1"#
            case .ready, .standby:
                arguments = #""device":"\#(chain)-top""#
            case .pending:
                arguments = #""device":"\#(chain)-top","top-node":"\#(chain)-mid","auto-finalize":false,"auto-dismiss":false"#
            case .concluded:
                arguments = #""device":"\#(chain)-top","top-node":"\#(chain)-mid","auto-dismiss":false"#
            }
            let reply = try execute("block-commit", #"{"job-id":"\#(id)",\#(arguments)}"#)
            guard reply["return"] != nil else { throw HostileFailure("block-commit: \(reply.qemuJSON())") }
            let base: Target = target == .paused ? .running : target == .standby ? .ready : target
            guard try wait(id, for: [base.rawValue]) == base.rawValue else { throw HostileFailure("\(id) never \(base)") }
            if target == .paused || target == .standby {
                _ = try execute("job-pause", #"{"id":"\#(id)"}"#)
                guard try wait(id, for: [target.rawValue]) == target.rawValue else { throw HostileFailure("\(id) never \(target)") }
            }
            return id
        }

        /// Ends the job, whatever its state.
        func dispose(_ id: String) throws {
            if let status = try status(id), status != "concluded" {
                _ = try execute("job-cancel", #"{"id":"\#(id)"}"#)
            }
            if try wait(id, for: [nil, "concluded"]) == "concluded" {
                _ = try execute("job-dismiss", #"{"id":"\#(id)"}"#)
            }
            guard try wait(id, for: [nil]) == nil else { throw HostileFailure("\(id) did not go away") }
        }
    }

    /// "state verb" -> "reply => settled status", in order.
    static func matrix(_ kind: ComparedService.Kind) throws -> [(String, String)] {
        let lab = try Lab(kind)
        defer { lab.service.stop() }
        var rows: [(String, String)] = []
        for target in Target.allCases {
            var id = try lab.job(in: target)
            for verb in verbs {
                let reply = try lab.execute(verb.name, verb.arguments(id))
                let accepted = reply["return"] != nil
                let after = accepted ? try lab.wait(id, for: verb.settled) : try lab.status(id)
                // The job's name appears in QEMU's refusals: print it generically.
                let text = reply.qemuJSON().replacingOccurrences(of: "'\(id)'", with: "'JOB'")
                rows.append(("\(target) \(verb.name)", "\(text) => \(after ?? "gone")"))
                if accepted || after != target.rawValue {
                    try lab.dispose(id)
                    id = try lab.job(in: target)
                }
            }
            try lab.dispose(id)
        }
        return rows
    }

    @Test func everyVerbInEveryStateAnswersAsQEMU() async throws {
        async let qemuRows = Self.matrix(.qemu)
        let ours = try Self.matrix(.qcowkit)
        let theirs = try await qemuRows
        #expect(ours.count == theirs.count)
        for ((key, mine), (_, qemu)) in zip(ours, theirs) where mine != qemu {
            Issue.record("\(key):\n  QEMU: \(qemu)\n  ours: \(mine)")
        }
        // A few rows pinned, so that the comparison cannot pass vacuously.
        let table = Dictionary(ours, uniquingKeysWith: { first, _ in first })
        #expect(table["standby job-complete"] == #"{"return": {}} => standby"#)
        #expect(table["paused block-job-cancel"]
            == #"{"error": {"class": "GenericError", "desc": "The block job for device 'JOB' is currently paused"}} => paused"#)
        #expect(table["pending job-finalize"] == #"{"return": {}} => concluded"#)
        #expect(table["running job-resume"]
            == #"{"error": {"class": "GenericError", "desc": "Can't resume a job that was not paused"}} => running"#)
        #expect(table["concluded job-cancel"]
            == #"{"error": {"class": "GenericError", "desc": "Job 'JOB' in state 'concluded' cannot accept command verb 'cancel'"}} => concluded"#)
        #expect(table.count == Target.allCases.count * Self.verbs.count)
    }

    /// complete in standby is only acted on at resume: the job then
    /// completes (QEMU 7.2 does so), rather than staying parked or being
    /// refused.
    @Test func completeInStandbyTakesEffectOnResume() async throws {
        @Sendable func run(_ kind: ComparedService.Kind) throws -> [String] {
            let lab = try Lab(kind)
            defer { lab.service.stop() }
            let id = try lab.job(in: .standby)
            var log: [String] = []
            log.append(try lab.execute("job-complete", #"{"id":"\#(id)"}"#).qemuJSON())
            usleep(100_000)
            log.append(try lab.status(id) ?? "gone")
            log.append(try lab.execute("job-resume", #"{"id":"\#(id)"}"#).qemuJSON())
            log.append(try lab.wait(id, for: [nil]) ?? "gone")
            // Completed, not cancelled.
            log += lab.events.compactMap { event in
                guard let name = event["event"]?.stringValue, name.hasPrefix("BLOCK_JOB_"), event["data"]?["device"] == .string(id) else { return nil }
                return name
            }
            return log
        }
        async let qemu = run(.qemu)
        let ours = try run(.qcowkit)
        let theirs = try await qemu
        #expect(ours == theirs, "QEMU: \(theirs)")
        #expect(ours == [#"{"return": {}}"#, "standby", #"{"return": {}}"#, "gone", "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED"])
    }
}
