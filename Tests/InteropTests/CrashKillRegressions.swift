// Crash windows the SIGKILL test found, pinned down without timing: the
// writer kills itself (`sigraise 9`) right after the operation, with the L2
// update it made still only in its cache. QEMU 7.2 fails both: it punches a
// freed compressed cluster out of the file, and hands a freed cluster out for
// new data, while an L2 entry on disk still names it.
import Foundation
import Testing
@testable import Qcow2
import TestSupport

@Suite("Write path: freed clusters and stale L2 entries after a crash")
struct CrashKillRegressions {
    /// Runs `commands` with `qcowkit io` in writeback mode; the last one kills it.
    private func runKilled(_ image: String, _ commands: [String]) throws {
        let qcowkit = try TestTools.qcowkit()
        let script = (commands + ["sigraise 9"]).flatMap { ["-c", $0] }
        let result = try WriteProcess.run([qcowkit, "io", "-t", "writeback", "-f", "qcow2"] + script + [image], check: false)
        #expect(result.status != 0, "the writer was meant to die: \(result.output)")
    }

    /// Whether qemu-io reads `length` bytes of `pattern` at `offset`.
    private func reads(_ image: String, _ pattern: UInt8, at offset: UInt64, _ length: UInt64) throws -> Bool {
        let result = try WriteProcess.run(
            ["qemu-io", "-r", "-f", "qcow2", "-c", "read -q -P \(pattern) \(offset) \(length)", image], check: false)
        return result.status == 0 && result.output.isEmpty
    }

    @Test("a freed compressed cluster is punched out only after its L2 entry is gone from disk",
          arguments: [("1", "write -q -z -u 0 64k"), ("16", "write -q -z -u 0 64k"), ("16", "discard -q 0 64k")])
    func compressedClusterFreed(_ refcountBits: String, _ free: String) throws {
        let dir = try WriteScratch()
        let image = dir.file("image.qcow2")
        try WriteProcess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "refcount_bits=\(refcountBits)", image, "64M"])
        try runKilled(image, ["write -q -c -P 1 0 64k", "flush", free])
        // Before: the old entry named a hole, and reading failed (EIO).
        #expect(try reads(image, 1, at: 0, 65536) || reads(image, 0, at: 0, 65536))
        let check = try WriteOracle.check(image)
        #expect(check.status == 0 || check.status == 3, "\(check.output)")
    }

    @Test("a freed cluster takes new data only after its L2 entry is gone from disk", arguments: [false, true])
    func freedClusterReused(_ lazy: Bool) throws {
        let dir = try WriteScratch()
        let image = dir.file("image.qcow2")
        try WriteProcess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=\(lazy ? "on" : "off")", image, "64M"])
        // The discarded cluster is the first free one: the next write takes it.
        try runKilled(image, ["write -q -P 1 0 64k", "flush", "discard -q 0 64k", "write -q -P 2 64k 64k"])
        // Before (lazy refcounts): guest offset 0 read the 2s written for 64k.
        #expect(try reads(image, 1, at: 0, 65536) || reads(image, 0, at: 0, 65536))
        #expect(try reads(image, 2, at: 65536, 65536) || reads(image, 0, at: 65536, 65536))
        let check = try WriteProcess.run(["qemu-img", "check", "-r", lazy ? "all" : "leaks", image], check: false)
        #expect(check.status == 0, "\(check.output)")
    }
}
