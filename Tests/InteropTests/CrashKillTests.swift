// The write path killed with SIGKILL at random points of a seeded workload
// (issue 3): `qcowkit io` (CrashKillWriter) runs writes, zero writes,
// discards, compressed writes and flushes on an image, and is killed in the
// middle of a command (or between two) after a random delay. Then:
//  - `qemu-img check` finds no corruption (leaks allowed); with lazy
//    refcounts the image is dirty, and `qemu-img check -r all` must repair it;
//  - every byte reads back, through qemu-io and through `qcowkit io` alike,
//    as of the last acknowledged flush, or as a value it was given since
//    (CrashModel): never anything else;
//  - qcowkit opens the image for writing (repairing a dirty one as QEMU
//    would, and byte for byte as QEMU does) and it is checked and read again.
// Each variant goes on with the same image for several kills, so later runs
// start from crashed-and-repaired images. L1 tables do not grow here: a
// valid image's L1 table covers its whole virtual size, and only a resize
// (which `qcowkit io` does not offer) grows it; large virtual sizes spread
// the L2 tables over a many-cluster L1 table instead.
import Foundation
import Testing
@testable import Qcow2
import TestSupport

struct CrashKillVariant: CustomTestStringConvertible, Sendable {
    var name: String
    /// qemu-img create -o options.
    var options: [String]
    var size: UInt64
    var clusterSize: UInt64
    var windowLength: UInt64
    var backing = false
    /// qemu-io's default cache mode: every command is flushed as it returns.
    var writethrough = false
    var kills = 6
    var seed: UInt64
    var largeWrite: UInt64
    var largePercent: UInt64 = 10
    var commandsPerRun: ClosedRange<UInt64> = 8...36
    /// The workload writes enough to outgrow the first refcount table.
    var growsRefcountTable = false

    var testDescription: String { name }
    var lazy: Bool { options.contains("lazy_refcounts=on") }

    /// Four windows: the start, two inside and the end of the disk.
    var windows: [CrashWindow] {
        let align = { (x: UInt64) in x / clusterSize * clusterSize }
        return [0, align(size / 3), align(size / 3 * 2) + 7 * clusterSize, size - windowLength]
            .map { CrashWindow(start: $0, length: windowLength) }
    }
}

@Suite("Write path: SIGKILL at random points")
struct CrashKillTests {
    static let variants: [CrashKillVariant] = [
        // 64 refcounts per 512-byte block, a one-cluster refcount table for
        // 2 MiB of file; 4 GiB need a 1 MiB L1 table: the workload outgrows
        // the refcount table.
        CrashKillVariant(name: "512-byte clusters, 64-bit refcounts, 4 GiB", options: ["cluster_size=512", "refcount_bits=64"],
                         size: 4 << 30, clusterSize: 512, windowLength: 1 << 20, seed: 7001, largeWrite: 512 << 10,
                         largePercent: 40, growsRefcountTable: true),
        CrashKillVariant(name: "512-byte clusters, 1-bit refcounts, backing file", options: ["cluster_size=512", "refcount_bits=1"],
                         size: 256 << 20, clusterSize: 512, windowLength: 128 << 10, backing: true, seed: 7002,
                         largeWrite: 64 << 10),
        CrashKillVariant(name: "4 KiB clusters, backing file", options: ["cluster_size=4096"],
                         size: 4 << 30, clusterSize: 4096, windowLength: 256 << 10, backing: true, seed: 7003,
                         largeWrite: 128 << 10),
        CrashKillVariant(name: "64 KiB clusters, 1-bit refcounts, 64 GiB", options: ["refcount_bits=1"],
                         size: 64 << 30, clusterSize: 65536, windowLength: 1 << 20, seed: 7004, largeWrite: 512 << 10),
        CrashKillVariant(name: "extended L2, 32 KiB clusters, backing file", options: ["extended_l2=on", "cluster_size=32k"],
                         size: 8 << 30, clusterSize: 32768, windowLength: 512 << 10, backing: true, seed: 7005,
                         largeWrite: 256 << 10),
        CrashKillVariant(name: "extended L2, 16 KiB clusters, lazy refcounts",
                         options: ["extended_l2=on", "cluster_size=16k", "lazy_refcounts=on"],
                         size: 2 << 30, clusterSize: 16384, windowLength: 256 << 10, seed: 7006, largeWrite: 128 << 10),
        CrashKillVariant(name: "512-byte clusters, lazy refcounts, backing file",
                         options: ["cluster_size=512", "lazy_refcounts=on", "refcount_bits=16"],
                         size: 512 << 20, clusterSize: 512, windowLength: 128 << 10, backing: true, seed: 7007,
                         largeWrite: 64 << 10),
        CrashKillVariant(name: "4 KiB clusters, lazy refcounts, writethrough", options: ["cluster_size=4096", "lazy_refcounts=on"],
                         size: 1 << 30, clusterSize: 4096, windowLength: 256 << 10, writethrough: true, seed: 7008,
                         largeWrite: 128 << 10, commandsPerRun: 4...16),
    ]

    @Test("qemu-img check and read-back after each kill", arguments: variants)
    func killedWriter(_ v: CrashKillVariant) throws {
        let qcowkit = try TestTools.qcowkit()
        let dir = try WriteScratch()
        let image = dir.file("image.qcow2")
        var model = CrashModel(clusterSize: v.clusterSize, windows: v.windows)
        var createArguments = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", v.options.joined(separator: ",")]
        if v.backing {
            let backing = dir.file("backing.qcow2")
            try WriteProcess.run(["qemu-img", "create", "-q", "-f", "qcow2", backing, "\(v.size)"])
            var fill: [WriteOp] = []
            for (w, window) in v.windows.enumerated() {
                fill.append(.write(window.start + window.length / 4, window.length / 2, pattern: 0xA0 + UInt8(w)))
                fill.append(.write(window.start, 3000, pattern: 0xC0))
            }
            let output = try WriteOracle.applyWithQemuIO(backing, fill, randomFile: "")
            #expect(output.isEmpty, "\(output)")
            for op in fill { model.apply(op) }
            createArguments += ["-b", backing, "-F", "qcow2"]
        }
        try WriteProcess.run(createArguments + [image, "\(v.size)"])
        let initialHeader = try Self.header(image)

        var run = CrashKillRun(variant: v, image: image, dir: dir, qcowkit: qcowkit)
        var workload = CrashWorkload(random: WriteRandom(seed: v.seed), clusterSize: v.clusterSize,
                                     windows: v.windows, largeWrite: v.largeWrite, largePercent: v.largePercent)
        for cycle in 0..<v.kills {
            try run.cycle(cycle, workload: &workload, model: &model)
        }

        let finalHeader = try Self.header(image)
        if v.growsRefcountTable {
            #expect(finalHeader.refcountTableClusters > initialHeader.refcountTableClusters,
                    "the workload was meant to grow the refcount table")
        }
        let fileSize = (try FileManager.default.attributesOfItem(atPath: image)[.size] as? NSNumber)?.intValue ?? 0
        print("crash-kill \(v.name): \(run.summary), file \(fileSize >> 10) KiB")
    }

    static func header(_ path: String) throws -> Qcow2Header {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        return try Qcow2Header.decode([UInt8](handle.readData(ofLength: 4096)))
    }
}

/// One variant's runs against its image.
struct CrashKillRun {
    let variant: CrashKillVariant
    let image: String
    let dir: WriteScratch
    let qcowkit: String
    private(set) var kills = 0
    private(set) var interrupted = 0
    private(set) var duringFlush = 0
    private(set) var duringRepair = 0
    private(set) var leakyChecks = 0
    /// Something failed in this cycle: the crashed image is kept.
    private var failed = false

    init(variant: CrashKillVariant, image: String, dir: WriteScratch, qcowkit: String) {
        self.variant = variant
        self.image = image
        self.dir = dir
        self.qcowkit = qcowkit
    }

    var summary: String {
        "\(kills) kills (\(interrupted) inside a command, \(duringFlush) inside a flush), "
            + "\(duringRepair) during a repair, \(leakyChecks) checks with leaks"
    }

    /// Records an issue (and keeps the crashed image for inspection).
    private mutating func expect(_ condition: Bool, _ message: @autoclosure () -> String,
                                 sourceLocation: SourceLocation = #_sourceLocation) {
        guard !condition else { return }
        failed = true
        Issue.record(Comment(rawValue: message()), sourceLocation: sourceLocation)
    }

    mutating func cycle(_ cycle: Int, workload: inout CrashWorkload, model: inout CrashModel) throws {
        failed = false
        let v = variant
        let count = Int(v.commandsPerRun.lowerBound + workload.below(UInt64(v.commandsPerRun.count)))
        let commands = workload.commands(count)
        var killAt = Int(workload.below(UInt64(count)))
        // A quarter of the kills aim at a flush, which writes back all the
        // dirty metadata in its order.
        let flushes = commands.indices.filter { if case .flush = commands[$0] { return true }; return false }
        if !flushes.isEmpty && workload.below(4) == 0 { killAt = flushes[Int(workload.below(UInt64(flushes.count)))] }
        // Mostly inside the command (metadata updates take fsyncs), sometimes at once.
        let delay = workload.below(5) == 0 ? 0 : UInt32(workload.below(4000))
        let context = "cycle \(cycle), killed during command \(killAt) after \(delay) µs; commands:\n"
            + commands.prefix(killAt + 1).enumerated().map { "  \($0.offset): \($0.element)" }.joined(separator: "\n")

        let writer = try CrashKillWriter(
            executable: qcowkit, arguments: ["io", "-f", "qcow2"] + (v.writethrough ? [] : ["-t", "writeback"]) + [image])
        guard writer.waitForPrompts(1) else {
            let output = String(decoding: writer.kill(), as: UTF8.self)
            Issue.record("the writer did not start: \(output)")
            return
        }
        for i in 0...killAt {
            writer.send(commands[i].line)
            if i < killAt && !writer.waitForPrompts(i + 2) {
                let output = String(decoding: writer.kill(), as: UTF8.self)
                Issue.record("no prompt after command \(i): \(output)\n\(context)")
                return
            }
        }
        if delay > 0 { usleep(delay) }
        let segments = CrashKillWriter.segments(writer.kill())
        kills += 1
        let crashed = try dir.copy(image, to: "crashed.qcow2")
        defer {
            if failed {
                let kept = FileManager.default.temporaryDirectory
                    .appendingPathComponent("qcowkit-crash-kill-\(v.seed)-\(cycle)-\(UUID().uuidString.prefix(8))")
                try? FileManager.default.createDirectory(at: kept, withIntermediateDirectories: true)
                try? FileManager.default.copyItem(atPath: crashed, toPath: kept.appendingPathComponent("crashed.qcow2").path)
                if v.backing {
                    try? FileManager.default.copyItem(atPath: dir.file("backing.qcow2"),
                                                      toPath: kept.appendingPathComponent("backing.qcow2").path)
                }
                print("crash-kill: the crashed image is kept in \(kept.path)")
            }
        }

        // segments: [opening, command 0, ..., the last prompt's tail]
        let completed = segments.count - 2
        guard completed == killAt || completed == killAt + 1 else {
            Issue.record("\(completed) commands returned, expected \(killAt) or \(killAt + 1): \(segments)\n\(context)")
            return
        }
        if completed == killAt {
            interrupted += 1
            if case .flush = commands[killAt] { duringFlush += 1 }
        }
        var failed = Set<Int>()
        for i in 0..<completed where !segments[i + 1].isEmpty {
            if case .op(.compressed) = commands[i], segments[i + 1].contains("Input/output error") {
                failed.insert(i)   // compressing into an allocated cluster
            } else {
                expect(false, "command \(i) (\(commands[i])) printed: \(segments[i + 1])\n\(context)")
            }
        }
        // Commands before the last acknowledged flush are durable.
        var durable = 0
        if v.writethrough {
            durable = completed
        } else if let last = (0..<completed).last(where: { if case .flush = commands[$0] { return true }; return false }) {
            durable = last + 1
        }
        for i in 0..<durable where !failed.contains(i) {
            if case let .op(op) = commands[i] { model.apply(op) }
        }
        let pending: [WriteOp] = (durable..<(killAt + 1)).compactMap { i in
            guard !failed.contains(i), case let .op(op) = commands[i] else { return nil }
            return op
        }

        // The crashed image: consistent, and holding the durable data.
        try checkAfterCrash(context)
        var resolved = try readBack(model, alternatives: model.alternatives(after: pending), context: "after the kill, " + context)
        if v.lazy && workload.below(3) == 0 {
            // Killed again while the next writer repairs the refcounts.
            try killDuringRepair(delay: UInt32(workload.below(30_000)), context: context)
            resolved = try readBack(resolved, alternatives: nil, context: "after a kill during repair, " + context)
        }

        // Opened for writing by qcowkit: a dirty image is repaired, as by QEMU.
        let beforeRepair = try dir.copy(image, to: "before-repair.qcow2")
        let wasDirty = try CrashKillTests.header(image).incompatibleFeatures.contains(.dirty)
        let reopened = try WriteProcess.run([qcowkit, "io", "-f", "qcow2", "-c", "flush", image], check: false)
        expect(reopened.status == 0, "reopening: \(reopened.output)\n\(context)")
        if v.lazy {
            // The repair on open prints its findings as QEMU's open does.
            let qemu = try WriteProcess.run(["qemu-io", "-f", "qcow2", "-c", "flush", beforeRepair], check: false)
            expect(reopened.output == qemu.output,
                   "reopening printed\n\(reopened.output)\nqemu-io printed\n\(qemu.output)\n\(context)")
            let difference = try WriteOracle.firstDifference(beforeRepair, image)
            expect(difference == nil, "repaired unlike QEMU: \(difference ?? "")\n\(context)")
        } else {
            expect(reopened.output.isEmpty, "reopening: \(reopened.output)\n\(context)")
        }
        let check = try WriteOracle.check(image)
        if wasDirty {
            // The repair fixes leaks too.
            expect(check.status == 0, "after the repair: \(check.output)\n\(context)")
        } else {
            expect(check.status == 0 || check.status == 3, "after reopening: \(check.output)\n\(context)")
        }
        model = try readBack(resolved, alternatives: nil, context: "after reopening, " + context)
    }

    /// qemu-img check on the crashed image: no corruption, only leaks;
    /// with lazy refcounts (dirty) a repair by `qemu-img check -r all`.
    private mutating func checkAfterCrash(_ context: String) throws {
        if variant.lazy {
            let copy = try dir.copy(image, to: "check-copy.qcow2")
            let repair = try WriteProcess.run(["qemu-img", "check", "-r", "all", copy], check: false)
            expect(repair.status == 0, "qemu-img check -r all: \(repair.output)\n\(context)")
        } else {
            let check = try WriteOracle.check(image)
            expect(check.status == 0 || check.status == 3, "qemu-img check: \(check.output)\n\(context)")
            if check.status == 3 { leakyChecks += 1 }
        }
    }

    /// A writer opening the dirty image (which repairs it) is killed after
    /// `delay` µs: the image must still be repairable, its data intact.
    private mutating func killDuringRepair(delay: UInt32, context: String) throws {
        let writer = try CrashKillWriter(executable: qcowkit, arguments: ["io", "-f", "qcow2", "-t", "writeback", image])
        usleep(delay)
        let output = writer.kill()
        if CrashKillWriter.segments(output).count < 2 { duringRepair += 1 }
        let copy = try dir.copy(image, to: "check-copy.qcow2")
        let repair = try WriteProcess.run(["qemu-img", "check", "-r", "all", copy], check: false)
        expect(repair.status == 0, "killed during the repair, then qemu-img check -r all: \(repair.output)\n\(context)")
    }

    /// Reads the windows with qemu-io and with `qcowkit io`: bytes with one
    /// possible value must have it, the others one of theirs (`alternatives`
    /// nil: every byte exactly as in `model`). Returns the contents found.
    private mutating func readBack(_ model: CrashModel, alternatives: [[Int: Set<UInt8>]]?, context: String) throws -> CrashModel {
        let extra = alternatives ?? model.windows.map { _ in [:] }
        let commands = CrashReadBack.commands(model, alternatives: extra)
        let script = commands.flatMap { ["-c", $0] }
        let qemu = try WriteProcess.run(["qemu-io", "-r", "-f", "qcow2"] + script + [image], check: false)
        let ours = try WriteProcess.run([qcowkit, "io", "-r", "-f", "qcow2"] + script + [image], check: false)
        let failures = CrashReadBack.failures(qemu.output, commands: commands)
        expect(failures.isEmpty, "qemu-io: \(failures.prefix(10).joined(separator: "\n"))\n\(context)")
        let ourFailures = CrashReadBack.failures(ours.output, commands: commands)
        expect(CrashReadBack.stable(ours.output) == CrashReadBack.stable(qemu.output),
               "qcowkit io reads differently from qemu-io: \(ourFailures.prefix(10).joined(separator: "\n"))\n\(context)")

        var found = model
        var thirdValues: [String] = []
        for (offset, value) in CrashReadBack.dumpedBytes(qemu.output) {
            guard let (w, i) = model.locate(offset, 1) else { continue }
            if value != model.bytes[w][i] && !(extra[w][i]?.contains(value) ?? false) {
                thirdValues.append("\(offset): \(value), expected \(model.bytes[w][i]) or \(extra[w][i].map { Array($0).sorted() } ?? [])")
            }
            found.bytes[w][i] = value
        }
        expect(thirdValues.isEmpty, "bytes that were never written there: \(thirdValues.sorted().prefix(20))\n\(context)")
        return found
    }
}
