// The image-changing verbs killed with SIGKILL at seeded random points (issue
// 10's crash safety): `qcowkit resize` (grow with preallocation, shrink),
// `qcowkit commit`, `qcowkit rebase` and `qcowkit amend` (refcount width,
// downgrade) run on fresh copies of a chain and
// are killed after a delay drawn between zero and a little more than an
// uninterrupted run took. After each kill:
//  - `qemu-img check` finds no corruption (leaks allowed); an image left
//    dirty (commit's emptying marks it so first) must be repaired by
//    `qemu-img check -r all`, as QEMU's next writable open would;
//  - the guest sees the image as before or after the verb: resize keeps
//    every byte below the smaller of the two sizes and has one of the two
//    sizes, and at the old size reads as before; commit, rebase and amend never change what the top of the chain
//    reads (`qemu-img compare` with an untouched copy), at any point.
import Foundation
import Testing
import TestSupport

struct CrashKillVerbWorkload: CustomTestStringConvertible, Sendable {
    enum Kind: Sendable { case resize(old: UInt64, new: UInt64), chainView }
    var name: String
    var setup: [[String]]
    /// The qcowkit verb and its arguments (images are in the working directory).
    var arguments: [String]
    var kind: Kind
    /// The image whose guest view is checked; `others` are checked too.
    var top = "img"
    var others: [String] = []
    var kills = 8
    var seed: UInt64
    var testDescription: String { name }
}

private typealias S = ImageVerbSetup

@Suite("Image verbs: SIGKILL at random points")
struct CrashKillVerbTests {
    static let workloads: [CrashKillVerbWorkload] = [
        CrashKillVerbWorkload(
            name: "resize grow, preallocation=metadata",
            setup: [S.qcow2("img", "16M"), S.io("img", "write -P 1 0 4M", "write -P 2 15M 1M")],
            arguments: ["resize", "--preallocation=metadata", "img", "8G"], kind: .resize(old: 16 << 20, new: 8 << 30),
            seed: 9101),
        CrashKillVerbWorkload(
            name: "resize grow over a longer backing (zeroed new part)",
            setup: [S.qcow2("base", "256M", "cluster_size=4k"), S.io("base", "write -P 7 0 256M"),
                    S.qcow2("img", "1000448", "cluster_size=4k", backing: "base"), S.io("img", "write -P 1 0 512k")],
            arguments: ["resize", "img", "200M"], kind: .resize(old: 1_000_448, new: 200 << 20), others: ["base"],
            seed: 9102),
        CrashKillVerbWorkload(
            name: "resize shrink, 512-byte clusters, 1-bit refcounts",
            setup: [S.qcow2("img", "24M", "cluster_size=512,refcount_bits=1"),
                    S.io("img", "write -P 1 0 3M", "write -P 2 8M 12M")],
            arguments: ["resize", "--shrink", "img", "5M"], kind: .resize(old: 24 << 20, new: 5 << 20), seed: 9103),
        CrashKillVerbWorkload(
            name: "commit into the backing file, then emptied",
            setup: [S.qcow2("base", "64M"), S.io("base", "write -P 1 0 8M"),
                    S.qcow2("img", "64M", "cluster_size=4k", backing: "base"),
                    S.io("img", "write -P 3 4M 24M", "write -z 40M 1M", "discard 5M 64k", "write -P 5 50M 8M")],
            arguments: ["commit", "img"], kind: .chainView, others: ["base"], seed: 9104),
        CrashKillVerbWorkload(
            name: "commit -b the bottom of three, base grown",
            setup: [S.qcow2("base", "8M", "cluster_size=4k"), S.io("base", "write -P 1 0 8M"),
                    S.qcow2("mid", "32M", backing: "base"), S.io("mid", "write -P 2 1M 8M"),
                    S.qcow2("img", "64M", backing: "mid"), S.io("img", "write -P 3 2M 30M")],
            arguments: ["commit", "-b", "base", "img"], kind: .chainView, seed: 9105),
        CrashKillVerbWorkload(
            name: "rebase onto an unrelated image",
            setup: [S.qcow2("base", "64M", "cluster_size=4k"), S.io("base", "write -P 1 0 48M"),
                    S.qcow2("img", "64M", "cluster_size=4k", backing: "base"), S.io("img", "write -P 4 6M 3000"),
                    S.qcow2("new", "64M"), S.io("new", "write -P 1 0 5M", "write -P 5 40M 1M")],
            arguments: ["rebase", "-b", "new", "-F", "qcow2", "img"], kind: .chainView, others: ["base", "new"], seed: 9106),
        CrashKillVerbWorkload(
            name: "rebase -b \"\": flattened",
            setup: [S.qcow2("base", "64M"), S.io("base", "write -P 1 0 40M"),
                    S.qcow2("img", "64M", "cluster_size=512", backing: "base"), S.io("img", "write -P 4 6M 3000")],
            arguments: ["rebase", "-b", "", "img"], kind: .chainView, others: ["base"], seed: 9107),
        CrashKillVerbWorkload(
            name: "amend refcount_bits=64, 512-byte clusters",
            setup: [S.qcow2("img", "64M", "cluster_size=512"), S.io("img", "write -P 1 0 8M", "write -z 1M 1M"),
                    ["qemu-img", "snapshot", "-c", "s1", "img"], S.io("img", "write -P 2 2M 1M")],
            arguments: ["amend", "-o", "refcount_bits=64", "img"], kind: .chainView, seed: 9108),
        CrashKillVerbWorkload(
            name: "amend compat=0.10 over a backing file: zero clusters expanded",
            setup: [S.qcow2("base", "64M"), S.io("base", "write -P 7 0 32M"),
                    S.qcow2("img", "64M", "cluster_size=4k", backing: "base"),
                    S.io("img", "write -z 0 16M", "write -P 1 20M 1M"), ["qemu-img", "snapshot", "-c", "s1", "img"],
                    S.io("img", "write -z 24M 4M")],
            arguments: ["amend", "-o", "compat=0.10", "img"], kind: .chainView, others: ["base"], seed: 9109),
    ]

    @Test("qemu-img check and the guest view after each kill", arguments: workloads)
    func killed(_ workload: CrashKillVerbWorkload) throws {
        let scratch = try ScratchDirectory()
        let template = scratch.url.appendingPathComponent("template")
        try FileManager.default.createDirectory(at: template, withIntermediateDirectories: true)
        for command in workload.setup { try QemuOracle.run(command, in: template) }
        // The untouched copy the guest view is compared with.
        let reference = scratch.url.appendingPathComponent("reference")
        try FileManager.default.copyItem(at: template, to: reference)

        // An uninterrupted run sets the range of delays.
        let timed = scratch.url.appendingPathComponent("timed")
        try FileManager.default.copyItem(at: template, to: timed)
        let start = ContinuousClock.now
        let full = try QemuOracle.run([try TestTools.qcowkit()] + workload.arguments, in: timed)
        let duration = ContinuousClock.now - start
        #expect(full.status == 0)
        try checkAfterKill(workload, in: timed, reference: reference, completed: true)

        var generator = WriteRandom(seed: workload.seed)
        let maxMicroseconds = max(2000, Int(duration.components.seconds * 1_000_000
                                                + duration.components.attoseconds / 1_000_000_000_000) * 6 / 5)
        var interrupted = 0
        for run in 0..<workload.kills {
            let directory = scratch.url.appendingPathComponent("run\(run)")
            try FileManager.default.copyItem(at: template, to: directory)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try TestTools.qcowkit())
            process.arguments = workload.arguments
            process.currentDirectoryURL = directory
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(useconds_t(Int.random(in: 0...maxMicroseconds, using: &generator)))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            if process.terminationReason == .uncaughtSignal { interrupted += 1 }
            try checkAfterKill(workload, in: directory, reference: reference, completed: false)
        }
        // How many kills landed inside the verb depends on the machine's load.
        print("\(workload.name): \(interrupted) of \(workload.kills) runs killed before the verb ended")
    }

    private func checkAfterKill(_ workload: CrashKillVerbWorkload, in directory: URL, reference: URL,
                                completed: Bool) throws {
        for name in [workload.top] + workload.others {
            let path = directory.appendingPathComponent(name).path
            let check = try QemuOracle.run(["qemu-img", "check", "-f", "qcow2", path], check: false)
            if check.status != 0 && check.status != 3 {
                #expect(!completed && isDirty(path), "\(name): \(check.output) \(check.errorOutput)")
                let repair = try QemuOracle.run(["qemu-img", "check", "-r", "all", "-f", "qcow2", path], check: false)
                #expect(repair.status == 0, "\(name) repaired: \(repair.output) \(repair.errorOutput)")
            }
        }
        let top = directory.appendingPathComponent(workload.top).path
        let original = reference.appendingPathComponent(workload.top).path
        switch workload.kind {
        case let .resize(old, new):
            let info = try QemuOracle.run(["qemu-img", "info", "--output=json", top])
            let size = info.output.contains("\"virtual-size\": \(new),") ? new : old
            #expect(info.output.contains("\"virtual-size\": \(size),"), "\(info.output)")
            if completed { #expect(size == new) }
            // Both sizes read the same below the smaller one.
            let kept = min(old, new)
            for (image, raw) in [(original, "\(top).before.raw"), (top, "\(top).after.raw")] {
                try QemuOracle.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=\(kept / 512)",
                                    "if=\(image)", "of=\(raw)"])
            }
            let same = try QemuOracle.run(["cmp", "\(top).before.raw", "\(top).after.raw"], check: false)
            #expect(same.status == 0, "the first \(kept) bytes changed")
            if size == old {
                // Still the old size: all of it reads as before (a shrink
                // writes the new size before it discards the tail).
                let compare = try QemuOracle.run(["qemu-img", "compare", "-U", original, top], check: false)
                #expect(compare.status == 0, "old size, other content: \(compare.output)")
            }
        case .chainView:
            let compare = try QemuOracle.run(["qemu-img", "compare", "-U", original, top], check: false)
            #expect(compare.status == 0, "the chain reads differently: \(compare.output) \(compare.errorOutput)")
        }
    }

    /// The header's dirty bit (incompatible feature bit 0, version 3).
    private func isDirty(_ path: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: path), data.count >= 80 else { return false }
        return data[79] & 1 != 0 && data[7] >= 3
    }
}
