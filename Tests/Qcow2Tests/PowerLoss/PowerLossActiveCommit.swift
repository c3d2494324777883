// The power-loss workload of serve's block-commit on the active layer (QMP
// block-commit, then block-job-complete): a drive on top.qcow2 over
// base.qcow2, guest requests through the drive while the commit job copies
// (before it is ready and while it is ready), completion, the pivot of the
// drive onto base, then guest requests through base. Both files recorded in
// one log (CrashReplayer.swift).
//
// What QEMU 7.2 guarantees (block/mirror.c, which runs active commit): until
// the pivot the guest's data is the top over base: guest writes go to the
// top, and the job writes into base only what the top maps there, hidden
// under it. On completion the job copies what is still dirty, with the
// guest's requests drained, then flushes base (mirror_flush) and only then
// pivots: from then on base alone holds the guest's data, durably as of the
// pivot, whether or not the guest flushed before. So a crash state cut
// before the pivot must read, through the top, as GuestHistory allows (what
// a completed guest flush acknowledged intact, the rest old or new); one cut
// after it must read so through base alone, with the pivot counted as a
// flush. Both images always pass `check -r leaks`. (The top's header still
// names base; which image the guest uses after a crash is the management's
// record of the pivot, as with QEMU.) The job copies on threads, so a seed's
// recording (and its crash states) varies a little from run to run.
import Foundation
import Synchronization
import Testing
@testable import BlockGraph
@testable import Qcow2

struct ActiveCommitWorkload: Sendable, CustomStringConvertible {
    let name: String
    var images: CommitWorkload

    var description: String { name }

    static let all: [ActiveCommitWorkload] = [
        ActiveCommitWorkload(name: "active commit (serve's block-commit): guest requests before ready, while ready, after the pivot",
                             images: CommitWorkload(name: "", requests: 20)),
    ]

    struct Run {
        let basePath: String
        let topPath: String
        let bases: [String: [UInt8]]
        let operations: [RecordedOperation]
        let history: GuestHistory
        /// The log's length once the drive was on base.
        let pivot: Int
    }

    func run(in dir: ScratchDirectory, seed: UInt64) throws -> Run {
        let (basePath, topPath) = try images.prepare(in: dir, seed: seed)
        let bases = [RecordedOperation.name(basePath): [UInt8](try Data(contentsOf: URL(fileURLWithPath: basePath))),
                     RecordedOperation.name(topPath): [UInt8](try Data(contentsOf: URL(fileURLWithPath: topPath)))]
        var rng = SeededRandom(seed: seed ^ 0xac71)
        let recorder = CrashRecorder()
        let history = GuestHistory()
        let graph = BlockGraph()
        defer { try? graph.closeAll() }
        graph.fileObserver = recorder
        try graph.addDrive(BlockdevOptions(driver: "qcow2", nodeName: "top", file: .filename(topPath)), id: "d0")
        var requests = 0
        func record(_ label: String, durable: Bool = false) throws {
            requests += 1
            history.record(try GuestView(of: try graph.lookup(device: "d0").image), position: recorder.position,
                           durable: durable, label: "#\(requests) \(label)")
        }
        try record("open", durable: true)
        func guest(_ count: Int, flushes: Bool = true) throws {
            let size = images.size
            for i in 0..<count {
                let drive = try graph.lookup(device: "d0")
                let length = Int.random(in: 1...6, using: &rng) * 512
                let offset = UInt64.random(in: 0...(size - UInt64(length)) / 512, using: &rng) * 512
                if Int.random(in: 0..<5, using: &rng) == 0 {
                    try drive.writeZeroes(at: offset, length: UInt64(length))
                    try record("zero \(offset)+\(length)")
                } else {
                    try drive.write(WriteFixture.pattern(UInt8(truncatingIfNeeded: requests &* 7 &+ i), count: length), at: offset)
                    try record("write \(offset)+\(length)")
                }
                if flushes, Int.random(in: 0..<3, using: &rng) == 0 {
                    try drive.flush()
                    try record("flush", durable: true)
                }
            }
        }

        let scheduler = PumpedScheduler()
        let failure = Mutex<String?>(nil)
        let manager = JobManager(scheduler: scheduler) { event in
            if case let .blockJobCompleted(data) = event, let error = data.error { failure.withLock { $0 = error } }
        }
        let job = try manager.startBlockJob(id: "commit", driver: try graph.makeCommitDriver(CommitRequest(device: "d0")))
        /// Runs the main loop until `done` (bounded: a hang fails the test, it does not time it).
        func pump(until done: () -> Bool) throws {
            for _ in 0..<200_000 {
                scheduler.pump()
                if done() { return }
                usleep(500)
            }
            throw CrashStateCheck.Failure("the commit job did not get on (status \(job.status))")
        }
        // Racing the first copy pass.
        try guest(4)
        try pump { job.status == .ready }
        // Mirrored while ready.
        try guest(10)
        // Left unflushed by the guest: the pivot must make them durable in base.
        try guest(2, flushes: false)
        try manager.complete(id: "commit")
        try pump { job.status == .concluded || job.status == .null }
        if let error = failure.withLock({ $0 }) { throw CrashStateCheck.Failure("the commit failed: \(error)") }
        let pivot = recorder.position
        try record("pivot onto base", durable: true)
        guard try graph.lookup(device: "d0").filename == basePath else { throw CrashStateCheck.Failure("no pivot") }
        try guest(6)
        try graph.closeAll()
        return Run(basePath: basePath, topPath: topPath, bases: bases, operations: recorder.operations, history: history,
                   pivot: pivot)
    }

    /// Replays and checks the crash states of one seed's run (those `only`
    /// accepts, given the pivot's position).
    func replayAndCheck(seed: UInt64, budget: CrashReplayer.Budget, qemuEvery: Int,
                        counts: inout CrashStateCheck.Counts, afterPivot: inout Int,
                        only: ((CrashState, _ pivot: Int) -> Bool)? = nil) throws {
        let dir = try ScratchDirectory()
        let run = try run(in: dir, seed: seed)
        counts.operations = run.operations.count
        counts.flushes = run.operations.filter(\.isFlush).count
        var index = 0
        CrashReplayer(bases: run.bases, operations: run.operations).forEachState(seed: seed ^ 0x5eed, budget: budget) { state in
            if let only, !only(state, run.pivot) { return }
            index += 1
            counts.states += 1
            let qemu = qemuEvery == 1 || index % qemuEvery == 1
            if qemu { counts.qemuChecked += 1 }
            if state.cut >= run.pivot { afterPivot += 1 }
            if let failure = failure(state, run, qemu: qemu, counts: &counts) {
                counts.failures.append("\(state.label): \(failure)")
            }
        }
    }

    private func failure(_ state: CrashState, _ run: Run, qemu: Bool, counts: inout CrashStateCheck.Counts) -> String? {
        do {
            let paths = [run.basePath, run.topPath]
            for path in paths {
                try Data(state.files[RecordedOperation.name(path)]!).write(to: URL(fileURLWithPath: path))
            }
            for path in paths {
                let name = RecordedOperation.name(path)
                if let failure = try CrashStateCheck.repairIfDirty(path: path, counts: &counts) { return "\(name): \(failure)" }
                if qemu { try Data(contentsOf: URL(fileURLWithPath: path)).write(to: URL(fileURLWithPath: path + ".qemu")) }
                if let failure = try CrashStateCheck.ourCheckFailure(path: path) { return "\(name): \(failure)" }
                if qemu, let failure = try CrashStateCheck.qemuCheckFailure(copy: path + ".qemu") { return "\(name): \(failure)" }
            }
            // Before the pivot the guest's disk is the top (over base); after it, base.
            let path = state.cut >= run.pivot ? run.basePath : run.topPath
            let view = try CommitWorkload.view(path)
            if let mismatch = run.history.mismatch(view, cut: state.cut) {
                return "through \(RecordedOperation.name(path)): \(mismatch)"
            }
            if qemu, let failure = try CrashStateCheck.qemuViewFailure(path: path, ours: view) { return failure }
            return nil
        } catch {
            return "\(error)"
        }
    }
}

extension PowerLossTests {
    /// Every state cut after the pivot, at every flush boundary (CI's
    /// sample of boundaries may miss them): base alone must hold what the
    /// guest wrote before the pivot, flushed or not. Passes; fails with the
    /// job's last flush of base (ActiveCommitDriver.prepare) removed.
    @Test func activeCommitPivotStates() throws {
        var counts = CrashStateCheck.Counts()
        var afterPivot = 0
        try ActiveCommitWorkload.all[0].replayAndCheck(seed: 1, budget: CrashReplayer.Budget(singles: .max, subsets: 4),
                                                        qemuEvery: 8, counts: &counts, afterPivot: &afterPivot) { state, pivot in
            state.cut >= pivot
        }
        #expect(afterPivot > 10)
        for failure in counts.failures { Issue.record("\(failure)") }
    }

    @Test(arguments: ActiveCommitWorkload.all)
    func activeCommitCrashStates(_ workload: ActiveCommitWorkload) throws {
        let settings = PowerLossSettings.current
        try settings.forEachSeed(of: workload.name) { seed in
            var counts = CrashStateCheck.Counts()
            var afterPivot = 0
            try workload.replayAndCheck(seed: seed, budget: settings.budget, qemuEvery: min(settings.qemuEvery, 8),
                                        counts: &counts, afterPivot: &afterPivot)
            return (counts, "\(counts.operations) file operations over 2 files, "
                + "\(counts.flushes) syncs, \(counts.states) crash states checked (\(afterPivot) after the pivot, "
                + "\(counts.dirtyRepaired) dirty images repaired on open, \(counts.qemuChecked) also by qemu-img)")
        }
    }
}
