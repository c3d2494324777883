// The ordering rules, tested the way a crash would: the file as it is on disk
// between any two operations (caches not written, tiny caches so that
// evictions happen all the time) must never reference a cluster whose
// refcount does not count it (`qemu-img check` may find leaks, never
// corruption); after a flush it must be entirely clean. With lazy refcounts
// the on-disk refcounts may lag, and opening the copy repairs them.
import Foundation
import Testing
@testable import Qcow2

@Suite("Write path: the file on disk is always consistent")
struct WriteInteropCrashConsistencyTests {
    static let cases: [WriteDifferentialCase] = [
        WriteDifferentialCase(name: "512-byte clusters", options: ["cluster_size=512"], clusterSize: 512, seed: 301, operations: 60),
        // A refcount block per 64 clusters: many blocks, evicted all the time.
        WriteDifferentialCase(name: "512-byte clusters, 64-bit refcounts", options: ["cluster_size=512", "refcount_bits=64"],
                              clusterSize: 512, clusters: 600, seed: 305, operations: 80),
        WriteDifferentialCase(name: "4 KiB clusters, 64-bit refcounts, snapshot",
                              options: ["cluster_size=4096", "refcount_bits=64"], clusterSize: 4096, seed: 302, operations: 60,
                              prepare: { _, image in try WriteDifferentialCases.fillAndSnapshot(image, clusterSize: 4096) }),
        WriteDifferentialCase(name: "extended L2, 16 KiB clusters", options: ["extended_l2=on", "cluster_size=16k"],
                              clusterSize: 16384, seed: 303, operations: 60),
        WriteDifferentialCase(name: "lazy refcounts", options: ["lazy_refcounts=on", "cluster_size=4096"],
                              clusterSize: 4096, seed: 304, operations: 60),
    ]

    @Test("between operations and after flushes", arguments: cases)
    func consistency(_ c: WriteDifferentialCase) throws {
        let dir = try WriteScratch()
        let path = dir.file("image.qcow2")
        try WriteProcess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", c.options.joined(separator: ","), path, "\(c.size)"])
        try c.prepare?(dir, path)
        let lazy = c.options.contains("lazy_refcounts=on")
        let random = WriteOracle.randomBytes(count: 65536, seed: c.seed)
        // Four L2 tables and two refcount blocks: metadata is evicted (and
        // so written, in order) all the time.
        let image = try Qcow2Image(file: BlockFile(path: path, writable: true),
                                   cacheCapacities: .init(l2Tables: 4, refcountBlocks: 2))
        for (i, op) in WriteOperationGenerator.operations(for: c).enumerated() {
            do {
                try WriteOracle.apply(op, to: image, random: random)
            } catch let Qcow2Error.writeFailed(code, _) where code == EIO && op.isCompressed {
                // Compressing into an allocated cluster, refused as by QEMU.
            }
            let flushed = i % 10 == 9
            if flushed { try image.flush() }
            let copy = try dir.copy(path, to: "crash.qcow2")
            if lazy {
                // Dirty: opening it for writing repairs the refcounts.
                if flushed {
                    let repaired = try Qcow2Image.open(path: copy, writable: true)
                    try repaired.close()
                    #expect(try WriteOracle.check(copy).status == 0, "after op \(i): \(op)")
                }
                continue
            }
            let check = try WriteOracle.check(copy)
            if flushed {
                #expect(check.status == 0, "after flush at op \(i): \(check.output)")
            } else {
                // 0: clean, 3: leaked clusters only; 2 would be corruption.
                #expect(check.status == 0 || check.status == 3, "after op \(i) (\(op)): \(check.output)")
            }
        }
        try image.close()
        #expect(try WriteOracle.check(path).status == 0)
    }

    @Test("a dropped reference reaches the disk before the refcount that counted it")
    func referencesBeforeRefcountDrops() throws {
        let dir = try WriteScratch()
        let path = dir.file("image.qcow2")
        // 64-bit refcounts in 512-byte blocks: a refcount block per 64 clusters.
        try WriteProcess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", path, "1M"])
        let image = try Qcow2Image(file: BlockFile(path: path, writable: true),
                                   cacheCapacities: .init(l2Tables: 4, refcountBlocks: 2))
        try [UInt8](repeating: 5, count: 200_000).withUnsafeBytes { try image.write($0, at: 0) }
        try image.flush()
        // Free guest cluster 10: its L2 table and its refcount block are now dirty.
        try image.discard(at: 5120, length: 512)
        // Load two far refcount blocks: the one just changed is evicted, written.
        try image.withWriter { writer, _ in
            _ = try writer.allocator.refcount(ofCluster: 64 * 5)
            _ = try writer.allocator.refcount(ofCluster: 64 * 6)
        }
        let copy = try dir.copy(path, to: "crash.qcow2")
        let check = try WriteOracle.check(copy)
        #expect(check.status == 0 || check.status == 3, "\(check.output)")
        try image.close()
        #expect(try WriteOracle.check(path).status == 0)
    }
}
