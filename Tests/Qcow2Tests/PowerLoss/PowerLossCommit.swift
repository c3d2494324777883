// The power-loss workload of an offline commit (`qcowkit commit`, as
// qemu-img commit): a top image over a qcow2 base, its data committed into
// the base, then the top emptied. Two files are written, each synced on its
// own, so the run is recorded over both and replayed with each file's syncs
// covering only that file (CrashReplayer.swift).
//
// What QEMU 7.2 guarantees, and so what every crash state must satisfy:
// qemu-img commit runs the active commit job (block/mirror.c) to completion;
// the job copies what the top allocates into base (growing base first when
// it is shorter), and before it becomes READY it flushes base (mirror_flush:
// base's metadata written, then synced). qemu-img completes the job only
// once it is ready, and only then empties the top (blk_make_empty:
// qcow2_make_empty, which for a version 3 top without snapshots or bitmaps
// marks it dirty, synced, before it zeroes its L1 table and resets its
// refcounts; otherwise it discards every cluster). The top is only read
// until then. So, wherever the power fails:
//  - both images pass `check -r leaks` (ours and qemu-img's; leaks
//    allowed, a dirty top repaired on open first, as QEMU repairs it);
//  - the guest reads through the top (over base) exactly what it read
//    before the commit: before the emptying the top still maps all it
//    had, and base changed only under it; once the emptying has begun,
//    what the top no longer maps reads from base, which durably holds the
//    same bytes;
//  - a top that maps nothing any more (the emptying done) leaves base alone
//    reading as that content: the commit's result.
// An ordering that emptied the top before base's copy was durable fails the
// second check (the top's old data gone, base's copy not there). The job
// copies on threads, so a seed's recording varies a little between runs.
import Foundation
import QcowKitCommands
import Testing
@testable import Qcow2

struct CommitWorkload: Sendable, CustomStringConvertible {
    let name: String
    var clusterSize: UInt64 = 512
    var baseClusterSize: UInt64 = 512
    var baseSize: UInt64 = 1 << 20
    var size: UInt64 = 1 << 20
    /// Requests into the top before the commit.
    var requests = 30
    /// Version 2 top: emptied by discarding every cluster, not reset.
    var topVersion: UInt32 = 3

    var description: String { name }

    static let all: [CommitWorkload] = [
        CommitWorkload(name: "commit: 512 B clusters, base grown from 768 KiB", baseSize: 768 << 10),
        discardEmptying,
    ]

    /// Found the top's data clusters punched (their refcount dropped to 0
    /// by the emptying's discards) while the L2 table that still named them
    /// was not yet durable: after a failure the top read zeroes where base
    /// holds the committed data. Fixed in DiscardQueue.swift's
    /// `processDiscards` (durably); pinned by
    /// PowerLossTests.commitDiscardEmptyingRegression.
    static let discardEmptying = CommitWorkload(
        name: "commit: 4 KiB top over 512 B base clusters, compat 0.10 top (emptied by discards)",
        clusterSize: 4096, topVersion: 2)

    struct Run {
        let basePath: String
        let topPath: String
        let bases: [String: [UInt8]]
        let operations: [RecordedOperation]
        /// The guest's view through the top before the commit.
        let view: GuestView
    }

    /// Prepares base and top in `dir` (unrecorded), then commits, recorded.
    func run(in dir: ScratchDirectory, seed: UInt64) throws -> Run {
        let (basePath, topPath) = try prepare(in: dir, seed: seed)
        let view = try Self.view(topPath)
        let bases = [RecordedOperation.name(basePath): [UInt8](try Data(contentsOf: URL(fileURLWithPath: basePath))),
                     RecordedOperation.name(topPath): [UInt8](try Data(contentsOf: URL(fileURLWithPath: topPath)))]
        let recorder = CrashRecorder()
        try Commit.commit(filename: topPath, format: "qcow2", baseFilename: basePath, drop: false, speed: 0,
                          direct: false, observer: recorder) { _ in }
        return Run(basePath: basePath, topPath: topPath, bases: bases, operations: recorder.operations, view: view)
    }

    /// Creates base (with data) and top over it (with data, zero clusters
    /// and holes) in `dir`, unrecorded; returns their paths.
    func prepare(in dir: ScratchDirectory, seed: UInt64) throws -> (base: String, top: String) {
        var rng = SeededRandom(seed: seed)
        let basePath = dir.file("base.qcow2"), topPath = dir.file("top.qcow2")
        var options = Qcow2CreateOptions(size: baseSize)
        options.clusterSize = baseClusterSize
        try Qcow2Creator.create(path: basePath, options: options)
        let base = try WriteFixture.openWritable(basePath)
        for i in 0..<12 {
            let count = Int.random(in: 1...6, using: &rng) * 512
            let offset = UInt64.random(in: 0...(baseSize - UInt64(count)) / 512, using: &rng) * 512
            try WriteFixture.write(base, WriteFixture.pattern(UInt8(100 + i), count: count), at: offset)
        }
        try base.close()
        options = Qcow2CreateOptions(size: size)
        options.clusterSize = clusterSize
        options.version = Qcow2Version(rawValue: topVersion)!
        options.backingFile = basePath
        options.backingFormat = "qcow2"
        try Qcow2Creator.create(path: topPath, options: options)
        let top = try WriteFixture.openWritable(topPath)
        for i in 0..<requests {
            let count = Int.random(in: 1...(Int(clusterSize) / 512 * 3), using: &rng) * 512
            let offset = UInt64.random(in: 0...(size - UInt64(count)) / 512, using: &rng) * 512
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: try top.writeZeroes(at: offset, length: UInt64(count), mayUnmap: false)
            case 1: try top.writeZeroes(at: offset, length: UInt64(count), mayUnmap: true)
            default: try WriteFixture.write(top, WriteFixture.pattern(UInt8(i + 1), count: count), at: offset)
            }
        }
        try top.close()
        return (basePath, topPath)
    }

    /// The guest's view of the image at `path` with its backing chain.
    static func view(_ path: String) throws -> GuestView {
        let image = try ImageOpener.open(path: path, format: .qcow2, locking: .off)
        defer { try? image.close() }
        return try GuestView(of: image)
    }

    /// Whether the image at `path`, alone, maps nothing.
    static func mapsNothing(_ path: String) throws -> Bool {
        let image = try ImageOpener.openWithoutBacking(path: path, format: .qcow2, writable: false, locking: .off)
        defer { try? image.close() }
        var offset: UInt64 = 0
        while offset < image.size {
            let status = try image.blockStatus(at: offset, length: image.size - offset)
            if status.isAllocated { return false }
            offset += status.length
        }
        return true
    }

    /// Replays and checks the crash states of one seed's run.
    func replayAndCheck(seed: UInt64, budget: CrashReplayer.Budget, qemuEvery: Int,
                        counts: inout CrashStateCheck.Counts, emptied: inout Int) throws {
        let dir = try ScratchDirectory()
        let run = try run(in: dir, seed: seed)
        #expect(try Self.mapsNothing(run.topPath), "the commit emptied the top")
        counts.operations = run.operations.count
        counts.flushes = run.operations.filter(\.isFlush).count
        var index = 0
        CrashReplayer(bases: run.bases, operations: run.operations).forEachState(seed: seed ^ 0x5eed, budget: budget) { state in
            index += 1
            counts.states += 1
            let qemu = qemuEvery == 1 || index % qemuEvery == 1
            if qemu { counts.qemuChecked += 1 }
            if let failure = failure(state, run, qemu: qemu, counts: &counts, emptied: &emptied) {
                counts.failures.append("\(state.label): \(failure)")
            }
        }
    }

    private func failure(_ state: CrashState, _ run: Run, qemu: Bool, counts: inout CrashStateCheck.Counts,
                         emptied: inout Int) -> String? {
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
            let through = try Self.view(run.topPath)
            if let mismatch = Self.mismatch(through, run.view) { return "through the top: \(mismatch)" }
            if qemu, let failure = try CrashStateCheck.qemuViewFailure(path: run.topPath, ours: through) { return failure }
            if try Self.mapsNothing(run.topPath) {
                emptied += 1
                let alone = try Self.view(run.basePath)
                guard alone.size >= run.view.size else { return "top emptied, base only \(alone.size) bytes" }
                let prefix = GuestView(size: run.view.size, sectors: Array(alone.sectors.prefix(run.view.sectors.count)))
                if let mismatch = Self.mismatch(prefix, run.view) { return "top emptied, base alone: \(mismatch)" }
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Where `found` differs from the pre-commit view `expected`.
    static func mismatch(_ found: GuestView, _ expected: GuestView) -> String? {
        guard found.size == expected.size else { return "size \(found.size), expected \(expected.size)" }
        let bad = found.sectors.indices.filter { found.sectors[$0] != expected.sectors[$0] }
        guard !bad.isEmpty else { return nil }
        return "guest sectors \(bad.prefix(8).map(String.init).joined(separator: ","))\(bad.count > 8 ? ",..." : "") "
            + "(\(bad.count) in all) read otherwise than before the commit"
    }
}

extension PowerLossTests {
    /// Every single-operation state of seed 1's run (the L2 table of the
    /// emptied top and the hole punched under it pending together among them).
    @Test func commitDiscardEmptyingRegression() throws {
        var counts = CrashStateCheck.Counts()
        var emptied = 0
        try CommitWorkload.discardEmptying.replayAndCheck(seed: 1, budget: CrashReplayer.Budget(singles: .max, subsets: 0),
                                                          qemuEvery: 16, counts: &counts, emptied: &emptied)
        #expect(counts.states > 100)
        #expect(emptied > 0)
        for failure in counts.failures { Issue.record("\(failure)") }
    }

    @Test(arguments: CommitWorkload.all)
    func commitCrashStates(_ workload: CommitWorkload) throws {
        let settings = PowerLossSettings.current
        try settings.forEachSeed(of: workload.name) { seed in
            var counts = CrashStateCheck.Counts()
            var emptied = 0
            try workload.replayAndCheck(seed: seed, budget: settings.budget, qemuEvery: min(settings.qemuEvery, 8),
                                        counts: &counts, emptied: &emptied)
            return (counts, "\(counts.operations) file operations over 2 files, "
                + "\(counts.flushes) syncs, \(counts.states) crash states checked (\(counts.dirtyRepaired) dirty images "
                + "repaired on open, \(counts.qemuChecked) also by qemu-img, \(emptied) with the top emptied)")
        }
    }
}
