import Testing
@testable import BlockGraph

/// The transition and verb tables, written out as QEMU's job.c lays them out
/// (rows: from / verb; columns U C R P Y S W D X E N), so a slip in either
/// encoding shows up as a mismatch.
@Suite struct JobStatusTableTests {
    static let columns: [JobStatus] = [
        .undefined, .created, .running, .paused, .ready, .standby, .waiting, .pending, .aborting, .concluded, .null,
    ]
    static let transitions: [JobStatus: String] = [
        .undefined: "01000000000", .created: "00100000101", .running: "00011010100",
        .paused: "00100000000", .ready: "00000110100", .standby: "00001000000",
        .waiting: "00000001100", .pending: "00000000110", .aborting: "00000000110",
        .concluded: "00000000001", .null: "00000000000",
    ]
    static let verbs: [JobVerb: String] = [
        .cancel: "01111111000", .pause: "01111100000", .resume: "01111100000", .setSpeed: "01111100000",
        .complete: "00001100000", .finalize: "00000001000", .dismiss: "00000000010",
    ]

    @Test(arguments: JobStatus.allCases)
    func transitionsFrom(_ from: JobStatus) throws {
        let row = try #require(Self.transitions[from])
        for (to, bit) in zip(Self.columns, row) {
            #expect(from.canMove(to: to) == (bit == "1"), "\(from) -> \(to)")
        }
    }

    @Test(arguments: JobVerb.allCases)
    func verbAllowedIn(_ verb: JobVerb) throws {
        let row = try #require(Self.verbs[verb])
        for (status, bit) in zip(Self.columns, row) {
            #expect(verb.isAllowed(in: status) == (bit == "1"), "\(verb) in \(status)")
        }
    }

    @Test func refusalMessageIsQEMUs() {
        let refused = JobVerbRefused(jobID: "commit0", status: .concluded, verb: .complete)
        #expect(refused.description == "Job 'commit0' in state 'concluded' cannot accept command verb 'complete'")
    }
}
