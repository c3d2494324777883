// Persistent bitmaps under SIGKILL: `qcowkit io` writing, and `qcowkit
// bitmap` changing bitmaps, on an image with an enabled and a disabled
// bitmap, killed after a seeded random delay (between zero and a little
// more than an uninterrupted run took). After each kill `qemu-img check`
// finds no corruption (leaks allowed), and every bitmap is either marked
// in-use (QEMU then treats it as inconsistent) or holds exactly the bits of
// before the run or of an uninterrupted run, read through qemu-nbd -B and
// nbdinfo: never silently wrong.
import Foundation
import Testing
import TestSupport

@Suite("Bitmaps: SIGKILL at random points")
struct CrashKillBitmapTests {
    struct Workload: CustomTestStringConvertible, Sendable {
        var name: String
        var arguments: [String]
        var seed: UInt64
        var testDescription: String { name }
    }

    static let workloads = [
        Workload(name: "io: writes, zero writes, discards and flushes",
                 arguments: ["io", "-c", "write -P 1 0 2M", "-c", "flush", "-c", "write -z 3M 1M", "-c", "discard 1M 64k",
                             "-c", "write -P 2 6M 3M", "-c", "flush", "-c", "write 9M 512", "IMAGE"], seed: 7301),
        Workload(name: "bitmap: clear, merge, add", arguments: ["bitmap", "--clear", "--merge", "fine", "--enable",
                                                                "IMAGE", "coarse"], seed: 7302),
    ]

    @Test("consistent or in use after each kill", arguments: workloads)
    func killed(_ workload: Workload) throws {
        let root = NSTemporaryDirectory() + "qcowkit-bitmap-kill-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let template = root + "/template.qcow2"
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", template, "12M"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", template, "coarse"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", "-g", "512", template, "fine"])
        try QemuOracle.run(["qemu-io", "-c", "write 5M 100k", template])
        try QemuOracle.run(["qemu-img", "bitmap", "--disable", template, "coarse"])
        let names = ["coarse", "fine"]
        let before = try names.map { try BitmapOracle.dirtyMap(template, $0) }

        let timed = root + "/timed.qcow2"
        try FileManager.default.copyItem(atPath: template, toPath: timed)
        let start = ContinuousClock.now
        let full = try QemuOracle.run(["qcowkit"] + workload.arguments.map { $0 == "IMAGE" ? timed : $0 })
        let duration = ContinuousClock.now - start
        #expect(full.status == 0)
        let after = try names.map { try BitmapOracle.dirtyMap(timed, $0) }

        var generator = WriteRandom(seed: workload.seed)
        let maxMicroseconds = max(2000, Int(duration.components.seconds * 1_000_000
                                                + duration.components.attoseconds / 1_000_000_000_000) * 6 / 5)
        for run in 0..<10 {
            let image = root + "/run\(run).qcow2"
            try FileManager.default.copyItem(atPath: template, toPath: image)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try TestTools.qcowkit())
            process.arguments = workload.arguments.map { $0 == "IMAGE" ? image : $0 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(useconds_t(Int.random(in: 0...maxMicroseconds, using: &generator)))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()

            let check = try QemuOracle.run(["qemu-img", "check", image], check: false)
            #expect(check.status == 0 || check.status == 3, "run \(run): \(check.output) \(check.errorOutput)")
            let info = try QemuOracle.run(["qemu-img", "info", "--output=json", image])
            let consistent = try BitmapOracle.consistentBitmaps(info.output)
            for (index, name) in names.enumerated() where consistent.contains(name) {
                let bits = try BitmapOracle.dirtyMap(image, name)
                #expect(bits == before[index] || bits == after[index], "run \(run): bits of \(name)")
            }
        }
    }
}
