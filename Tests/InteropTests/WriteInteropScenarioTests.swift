// Named scenarios against QEMU: the layout of a first write, snapshots kept
// intact by copy-on-write (checked by reverting to them with qemu-img), the
// repair of an image qemu-io crashed with lazy refcounts, and the one place
// the library departs from QEMU 7.2 on purpose.
import Foundation
import Testing
@testable import Qcow2

@Suite("Write path scenarios against QEMU")
struct WriteInteropScenarioTests {
    private func create(_ dir: WriteScratch, _ name: String, _ size: String, _ options: String = "") throws -> String {
        var arguments = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if !options.isEmpty { arguments += ["-o", options] }
        try WriteProcess.run(arguments + [dir.file(name), size], in: dir.url)
        return dir.file(name)
    }

    /// Applies `ops` to two copies of `base` (qemu-io and library) and
    /// expects identical files and a clean check.
    private func expectSameAsQemu(_ dir: WriteScratch, _ base: String, _ ops: [WriteOp],
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
        let random = WriteOracle.randomBytes(count: 65536, seed: 9)
        try Data(random).write(to: URL(fileURLWithPath: dir.file("random.bin")))
        let theirs = try dir.copy(base, to: "theirs.qcow2")
        let ours = try dir.copy(base, to: "ours.qcow2")
        try WriteOracle.applyWithQemuIO(theirs, ops, randomFile: dir.file("random.bin"))
        let errors = try WriteOracle.applyWithLibrary(ours, ops, random: random)
        #expect(errors.isEmpty, "\(errors)", sourceLocation: sourceLocation)
        #expect(try WriteOracle.firstDifference(theirs, ours) == nil, sourceLocation: sourceLocation)
        #expect(try WriteOracle.check(ours).status == 0, sourceLocation: sourceLocation)
    }

    @Test("a 64 KiB write at 1 MiB of a fresh 64 MiB image: a 393216-byte file, as qemu-io writes it")
    func firstWrite() throws {
        let dir = try WriteScratch()
        let base = try create(dir, "base.qcow2", "64M")
        try expectSameAsQemu(dir, base, [.write(1 << 20, 65536, pattern: 0xab)])
        #expect(try FileManager.default.attributesOfItem(atPath: dir.file("ours.qcow2"))[.size] as? Int == 393216)
    }

    @Test("writes after an internal snapshot copy its clusters: reverting with qemu-img brings the old data back")
    func snapshotsSurvive() throws {
        let dir = try WriteScratch()
        let base = try create(dir, "base.qcow2", "8M", "cluster_size=4096")
        try WriteProcess.run(["qemu-io", "-c", "write -q -P 0x11 0 1M", "-c", "write -q -c -P 0x12 2M 4k", base])
        try WriteProcess.run(["qemu-img", "snapshot", "-c", "before", base])
        let ops: [WriteOp] = [
            .write(1000, 5000, pattern: 0x21), .zeroes(8192, 8192, unmap: true), .discard(65536, 65536),
            .write(2 << 20, 100, pattern: 0x22), .zeroes(300_000, 10_000, unmap: false), .write(500_000, 600_000, pattern: 0x23),
        ]
        try expectSameAsQemu(dir, base, ops)
        let ours = dir.file("ours.qcow2")
        #expect(try WriteProcess.run(["qemu-io", "-c", "read -q -P 0x21 1000 5000", ours], check: false).output.isEmpty)
        try WriteProcess.run(["qemu-img", "snapshot", "-a", "before", ours])
        #expect(try WriteOracle.check(ours).status == 0)
        let reverted = try WriteProcess.run(
            ["qemu-io", "-c", "read -q -P 0x11 0 1M", "-c", "read -q -P 0x12 2M 4k", ours], check: false)
        #expect(reverted.status == 0 && reverted.output.isEmpty, "\(reverted.output)")
    }

    @Test("an image qemu-io left dirty (lazy refcounts, then abort) is repaired on open exactly as QEMU repairs it",
          arguments: ["cluster_size=4096", "cluster_size=512,refcount_bits=8", "extended_l2=on"])
    func lazyRefcountCrash(options: String) throws {
        let dir = try WriteScratch()
        let base = try create(dir, "base.qcow2", "16M", "lazy_refcounts=on," + options)
        try WriteProcess.run(["qemu-io", "-c", "write -q -P 0x31 0 1M", base])
        _ = try WriteProcess.run(["qemu-io", "-c", "write -q -z -u 0 300k", "-c", "write -q -P 0x32 2M 200k",
                                "-c", "write -q -c -P 0x33 4M 64k", "-c", "abort", base], check: false)
        #expect(try Qcow2Header.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: base)).prefix(4096))).isDirty)
        try expectSameAsQemu(dir, base, [.write(5 << 20, 1000, pattern: 0x34)])
    }

    @Test("QEMU 7.2 packs compressed data into a freed cluster after it was reallocated; the library does not")
    func compressedPackingBug() throws {
        let dir = try WriteScratch()
        let base = try create(dir, "base.qcow2", "16M")
        let ops: [WriteOp] = [
            .compressed(0, 65536, pattern: 7),      // packed into host cluster H
            .write(0, 65536, pattern: 1),           // copied out of H, which is freed
            .write(131072, 65536, pattern: 2),      // H is allocated again, for this data
            .compressed(262144, 65536, pattern: 3), // QEMU continues packing into H
        ]
        let random = WriteOracle.randomBytes(count: 4096, seed: 1)
        let theirs = try dir.copy(base, to: "theirs.qcow2")
        let ours = try dir.copy(base, to: "ours.qcow2")
        try WriteOracle.applyWithQemuIO(theirs, ops, randomFile: dir.file("unused"))
        var departures = WriteOracle.Departures()
        try WriteOracle.applyWithLibrary(ours, ops, random: random, departures: &departures)
        #expect(departures.repackingAvoided == 1)
        // QEMU's image has lost the data at 128 KiB and fails its check.
        #expect(try WriteOracle.check(theirs).status != 0)
        #expect(try WriteProcess.run(["qemu-io", "-c", "read -q -P 2 128k 64k", theirs], check: false).output.contains("failed"))
        // The library's image is sound.
        #expect(try WriteOracle.check(ours).status == 0)
        let verify = try WriteProcess.run(["qemu-io", "-c", "read -q -P 1 0 64k", "-c", "read -q -P 2 128k 64k",
                                         "-c", "read -q -P 3 256k 64k", ours], check: false)
        #expect(verify.status == 0 && verify.output.isEmpty, "\(verify.output)")
    }

    @Test("qcow2 backing files: copy-on-write reads them, zero writes and discards hide them")
    func qcow2Backing() throws {
        let dir = try WriteScratch()
        let back = try create(dir, "back.qcow2", "4M", "cluster_size=4096")
        try WriteProcess.run(["qemu-io", "-c", "write -q -P 0x51 0 4M", "-c", "write -q -z 1M 512k", back])
        let base = try create(dir, "base.qcow2", "6M", "backing_file=back.qcow2,backing_fmt=qcow2,cluster_size=65536")
        let ops: [WriteOp] = [
            .write(1000, 100, pattern: 0x52), .write(1_100_000, 100, pattern: 0x53), .write(4_190_000, 20000, pattern: 0x54),
            .zeroes(2 << 20, 1000, unmap: false), .zeroes(3 << 20, 65536, unmap: true), .discard(196_608, 131_072),
            .discard(4_128_768, 131_072), .compressed(5 << 20, 65536, pattern: 0x55),
        ]
        try expectSameAsQemu(dir, base, ops)
        #expect(try WriteOracle.compare(dir.file("theirs.qcow2"), dir.file("ours.qcow2")) == 0)
    }
}
