// Power-loss safety: every workload recorded, replayed into crash states at
// every flush boundary, every state checked (CrashStateCheck.swift). CI runs
// one seed per workload with a small budget per boundary; Scripts/powerloss.sh
// runs more seeds and states through the environment:
//   POWERLOSS_SEEDS=N        seeds per workload (default 1)
//   POWERLOSS_SINGLES=N      single-operation states per boundary (default 4)
//   POWERLOSS_SUBSETS=N      random subset states per boundary (default 2)
//   POWERLOSS_TORN=N         states per boundary with one write torn in sectors (default 1)
//   POWERLOSS_BOUNDARIES=N   flush boundaries per run, sampled (default 40)
//   POWERLOSS_QEMU_EVERY=N   qemu-img check and read every Nth state (default 60; some
//                            short workloads ask for more)
//   POWERLOSS_ONLY=TEXT      only the workloads whose name contains TEXT
// Each workload prints how many states it built and checked. The workloads
// over two files (offline and active commit) check their states themselves:
// PowerLossCommit.swift, PowerLossActiveCommit.swift.
import Foundation
import Testing
@testable import Qcow2

struct PowerLossSettings {
    var seeds: Int
    var budget: CrashReplayer.Budget
    var qemuEvery: Int

    /// Replays the workload `name` once per seed, unless POWERLOSS_ONLY
    /// selects others: `check` returns a seed's counts and what its report
    /// line says about them; the line is printed with the time taken, and
    /// the first failures are recorded as issues.
    func forEachSeed(of name: String,
                     _ check: (_ seed: UInt64) throws -> (counts: CrashStateCheck.Counts, report: String)) rethrows {
        if let only = ProcessInfo.processInfo.environment["POWERLOSS_ONLY"], !name.contains(only) { return }
        for seed in 1...UInt64(seeds) {
            let started = ContinuousClock.now
            let (counts, report) = try check(seed)
            print("powerloss: \(name), seed \(seed): \(report), \(counts.failures.count) failing, \(ContinuousClock.now - started)")
            for failure in counts.failures.prefix(5) { Issue.record("\(name) seed \(seed): \(failure)") }
        }
    }

    static let current: PowerLossSettings = {
        let env = ProcessInfo.processInfo.environment
        func value(_ name: String, _ fallback: Int) -> Int { env[name].flatMap(Int.init).map { max($0, 0) } ?? fallback }
        return PowerLossSettings(
            seeds: max(1, value("POWERLOSS_SEEDS", 1)),
            budget: CrashReplayer.Budget(singles: value("POWERLOSS_SINGLES", 4), subsets: value("POWERLOSS_SUBSETS", 2),
                                         torn: value("POWERLOSS_TORN", 1), boundaries: max(2, value("POWERLOSS_BOUNDARIES", 40))),
            qemuEvery: max(1, value("POWERLOSS_QEMU_EVERY", 60)))
    }()
}

/// Records `workload` with `seed`, then replays and checks its crash states.
func replayAndCheck(_ workload: PowerLossWorkload, seed: UInt64, budget: CrashReplayer.Budget, qemuEvery: Int,
                    only: ((CrashState) -> Bool)? = nil) throws -> CrashStateCheck.Counts {
    let dir = try ScratchDirectory()
    let (path, backing) = try workload.makeImage(in: dir)
    let run = try workload.run(path: path, backing: backing, seed: seed)
    let operations = try run.close()
    let replayer = CrashReplayer(bases: [RecordedOperation.name(path): run.base], operations: operations)
    let expectation = try StateExpectation(workload, base: run.base, history: run.history,
                                           closed: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
    var counts = CrashStateCheck.Counts()
    var index = 0
    let statePath = dir.file("state.qcow2")
    replayer.forEachState(seed: seed ^ 0x5eed, budget: budget) { state in
        if let only, !only(state) { return }
        index += 1
        CrashStateCheck.check(state, path: statePath, history: run.history, qemu: index % qemuEvery == 1 || qemuEvery == 1,
                              expectation: expectation, counts: &counts)
    }
    counts.operations = operations.count
    counts.flushes = operations.filter(\.isFlush).count
    return counts
}

@Suite("PowerLoss", .serialized)
struct PowerLossTests {
    @Test(arguments: PowerLossWorkload.all)
    func crashStates(_ workload: PowerLossWorkload) throws {
        let settings = PowerLossSettings.current
        try settings.forEachSeed(of: workload.name) { seed in
            let counts = try replayAndCheck(workload, seed: seed, budget: settings.budget,
                                            qemuEvery: min(settings.qemuEvery, workload.qemuEvery ?? .max))
            if case .repairOnOpen = workload.kind { #expect(counts.dirtyRepaired > 0, "the dirty base was repaired") }
            return (counts, "\(counts.operations) file operations, \(counts.flushes) syncs, "
                + "\(counts.states) crash states checked (\(counts.dirtyRepaired) dirty ones repaired on open, "
                + "\(counts.qemuChecked) also by qemu-img)"
                + (workload.hasBitmaps ? "; bitmaps: \(counts.bitmapsConsistent) consistent, \(counts.bitmapsInUse) in-use, "
                    + "\(counts.bitmapsIgnored) states with all ignored" : ""))
        }
    }

    /// Every single-operation state of the downgrade (the snapshot's L2
    /// table and the version 2 header pending together among them).
    @Test func downgradeRegression() throws {
        let counts = try replayAndCheck(.downgrade, seed: 1, budget: CrashReplayer.Budget(singles: .max, subsets: 4),
                                        qemuEvery: 16)
        #expect(counts.states > 60)
        for failure in counts.failures { Issue.record("\(failure)") }
    }

    /// Every state of a small run (every 4th checked by qemu-img too).
    @Test func lazyAllocationRegression() throws {
        let counts = try replayAndCheck(.lazyAllocationRegression, seed: 1,
                                        budget: CrashReplayer.Budget(singles: .max, subsets: 16), qemuEvery: 4)
        #expect(counts.states > 10)
        for failure in counts.failures { Issue.record("\(failure)") }
    }
}
