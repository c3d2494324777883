// The write path's safety nets: L1 growth, the overlap check and the corrupt
// bit, the dirty bit with lazy refcounts and repair on open, refusals, and
// the pieces the ordering rules are built from.
import Foundation
import Testing
@testable import Qcow2

@Suite("Write path: safety")
struct WriteSafetyTests {
    @Test("the L1 table grows by half at a time (or exactly), moved and synced before the header names it")
    func l1Growth() throws {
        let dir = try TestDirectory()
        // 512-byte clusters: 64 MiB needs 2048 L1 entries (32 clusters).
        let path = try WriteFixture.create(dir, size: 64 << 20, clusterSize: 512)
        let image = try WriteFixture.openWritable(path)
        let data = WriteFixture.pattern(5, count: 3000)
        try WriteFixture.write(image, data, at: 40000)
        let oldOffset = try WriteFixture.header(path).l1TableOffset
        // A table needed past the end of the L1 table grows it.
        _ = try image.withWriter { writer, _ in try writer.clusterTable(for: 2048 * 32768) }
        var header = try WriteFixture.header(path)
        #expect(header.l1Size == 3072)
        #expect(header.l1TableOffset != oldOffset)
        // The old table was freed, and the new L2 table took its first cluster.
        #expect(image.clusterMap.lock.withLock { $0.tables.l1[2048] } == oldOffset | Qcow2EntryMask.copied)
        for cluster in 1..<(2048 * 8 / 512) {
            #expect(try WriteFixture.refcount(image, ofCluster: oldOffset / 512 + UInt64(cluster)) == 0)
        }
        try image.withWriter { writer, _ in try writer.growL1Table(minEntries: 5000, exact: true) }
        header = try WriteFixture.header(path)
        #expect(header.l1Size == 5000)
        #expect(try image.read(data.count, at: 40000) == data)
        try WriteFixture.expectConsistent(image)
        try image.close()
        let reopened = try Qcow2Image.open(path: path)
        #expect(reopened.header.l1Size == 5000)
        #expect(try reopened.read(data.count, at: 40000) == data)
    }

    @Test("a write over metadata is refused: the image is marked corrupt and takes no more writes")
    func overlapMarksCorrupt() throws {
        let dir = try TestDirectory()
        let cs: UInt64 = 4096
        let path = try WriteFixture.create(dir, size: 1 << 20, clusterSize: cs)
        var image = try WriteFixture.openWritable(path)
        try WriteFixture.write(image, WriteFixture.pattern(1, count: Int(cs)), at: 0)
        let l2 = image.clusterMap.lock.withLock { $0.tables.l1[0] } & Qcow2EntryMask.offset
        try image.close()
        // Point guest cluster 1 at cluster 1, the refcount table.
        let file = try BlockFile(path: path, writable: true)
        var entry = [UInt8](repeating: 0, count: 8)
        entry.setBE(cs | Qcow2EntryMask.copied, at: 0)
        try file.write(entry, at: l2 + 8)
        try file.close()
        let table = try BlockFile(path: path, writable: false).readExactly(Int(cs), at: cs, step: "test")

        image = try WriteFixture.openWritable(path)
        #expect {
            try WriteFixture.write(image, [1, 2, 3], at: cs + 10)
        } throws: { error in
            guard case let Qcow2Error.writeFailed(code, reason) = error else { return false }
            return code == EIO && reason.contains("Preventing invalid write on metadata (overlaps with refcount table)")
        }
        #expect(try WriteFixture.header(path).isCorrupt)
        #expect(throws: Qcow2Error.self) { try WriteFixture.write(image, [1], at: 0) }
        #expect(throws: Qcow2Error.self) { try image.discard(at: 0, length: cs) }
        try image.close()
        #expect(try BlockFile(path: path, writable: false).readExactly(Int(cs), at: cs, step: "test") == table)
        #expect(throws: Qcow2Error.imageIsCorrupt) { _ = try Qcow2Image.open(path: path, writable: true) }
        #expect(try Qcow2Image.open(path: path).read(Int(cs), at: 0) == WriteFixture.pattern(1, count: Int(cs)))
    }

    @Test("lazy refcounts: the first allocating write sets the dirty bit; a clean close clears it")
    func dirtyBit() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 8 << 20, clusterSize: 4096, lazyRefcounts: true)
        let image = try WriteFixture.openWritable(path)
        #expect(try !WriteFixture.header(path).isDirty)
        try WriteFixture.write(image, WriteFixture.pattern(1, count: 10000), at: 5000)
        #expect(try WriteFixture.header(path).isDirty)
        try image.flush()
        #expect(try WriteFixture.header(path).isDirty)
        try image.close()
        let header = try WriteFixture.header(path)
        #expect(!header.isDirty)
        #expect(header.hasLazyRefcounts)
        let reopened = try WriteFixture.openWritable(path)
        try WriteFixture.expectConsistent(reopened)
        try reopened.close()
    }

    @Test("an image left dirty gets its refcounts repaired when opened for writing")
    func dirtyRepair() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 8 << 20, clusterSize: 4096, lazyRefcounts: true)
        let image = try WriteFixture.openWritable(path)
        var model = GuestModel(size: 1 << 20)
        for i: UInt64 in 0..<6 {
            let data = WriteFixture.pattern(UInt8(i), count: 7000)
            try WriteFixture.write(image, data, at: i * 150_000)
            model.write(data, at: i * 150_000)
        }
        // L2 tables reach the disk on flush; with the dirty bit set the
        // refcounts do not: a crash now leaves them stale.
        try image.flush()
        let crashed = dir.file("crashed.qcow2")
        try FileManager.default.copyItem(atPath: path, toPath: crashed)
        try image.close()
        #expect(try WriteFixture.header(crashed).isDirty)

        let repaired = try WriteFixture.openWritable(crashed)
        #expect(try !WriteFixture.header(crashed).isDirty)
        try WriteFixture.expectConsistent(repaired)
        #expect(try repaired.read(model.bytes.count, at: 0) == model.bytes)
        // And it takes writes again.
        try WriteFixture.write(repaired, [9, 9, 9], at: 999_000)
        try WriteFixture.expectConsistent(repaired)
        try repaired.close()
    }

    @Test("read-only images and out-of-range requests are refused")
    func refusals() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 1 << 20)
        let readOnly = try Qcow2Image.open(path: path)
        #expect(!readOnly.isWritable)
        #expect(throws: Qcow2Error.readOnly) { try WriteFixture.write(readOnly, [1], at: 0) }
        #expect(throws: Qcow2Error.readOnly) { try readOnly.writeZeroes(at: 0, length: 512, mayUnmap: false) }
        #expect(throws: Qcow2Error.readOnly) { try readOnly.discard(at: 0, length: 65536) }
        let image = try WriteFixture.openWritable(path)
        #expect(throws: Qcow2Error.requestOutOfRange(offset: (1 << 20) - 1, length: 2, size: 1 << 20)) {
            try WriteFixture.write(image, [1, 2], at: (1 << 20) - 1)
        }
        #expect(throws: Qcow2Error.self) { try image.writeZeroes(at: UInt64.max - 1, length: 5, mayUnmap: true) }
        #expect(throws: Qcow2Error.self) {
            try [UInt8](repeating: 0, count: 65536).withUnsafeBytes { try image.writeCompressed($0, at: 512) }
        }
        try image.close()
        // Nothing was allocated.
        #expect(try WriteFixture.fileSize(path) == 0x30008)

        // An overlay opened without its backing file would copy zeroes
        // where the backing shows through: refused.
        let overlay = try WriteFixture.create(dir, "overlay.qcow2", size: 1 << 20, backing: path, backingFormat: "qcow2")
        let alone = try Qcow2Image.open(path: overlay, writable: true)
        #expect(throws: Qcow2Error.self) { try WriteFixture.write(alone, [1], at: 0) }
        try alone.close()
        let chained = try WriteFixture.openWritable(overlay)
        try WriteFixture.write(chained, [1], at: 0)
        try chained.close()
    }

    @Test("refcounts refuse to leave their width's range (QEMU's -EINVAL)")
    func refcountRange() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 1 << 20, refcountBits: 1)
        let image = try WriteFixture.openWritable(path)
        for (decrease, cluster) in [(false, UInt64(0)), (true, UInt64(40))] {
            #expect {
                try image.withWriter { writer, _ in
                    try writer.allocator.updateRefcount(offset: cluster << 16, length: 1, addend: 1, decrease: decrease, type: .never)
                }
            } throws: { error in
                if case Qcow2Error.writeFailed(EINVAL, _) = error { return true }
                return false
            }
        }
        try WriteFixture.expectConsistent(image)
        try image.close()
    }

    @Test("the overlap index finds metadata in QEMU's order")
    func overlapIndex() {
        var index = MetadataOverlap(clusterBits: 12)
        index.activeL1 = (0x3000, 8)
        index.refcountTable = (0x1000, 0x1000)
        index.snapshotTable = (0x9000, 100)
        index.inactiveL1 = [(0xa000, 16)]
        index.setL2Tables([0x4000, 0, 0x6000])
        index.setRefcountBlocks([0x2000])
        #expect(index.overlap(offset: 100, size: 1) == .mainHeader)
        #expect(index.overlap(offset: 100, size: 1, ignoring: [.mainHeader]) == nil)
        #expect(index.overlap(offset: 0x1fff, size: 2) == .refcountTable)
        #expect(index.overlap(offset: 0x2100, size: 1) == .refcountBlock)
        #expect(index.overlap(offset: 0x3ff0, size: 32) == .activeL1)
        #expect(index.overlap(offset: 0x5000, size: 0x1000) == nil)
        #expect(index.overlap(offset: 0x5000, size: 0x1001) == .activeL2)
        #expect(index.overlap(offset: 0x5000, size: 0x1001, ignoring: [.activeL2]) == nil)
        #expect(index.overlap(offset: 0x9fff, size: 1) == .snapshotTable)
        #expect(index.overlap(offset: 0xa800, size: 1) == .inactiveL1)
        index.removeL2Table(0x6000)
        #expect(index.overlap(offset: 0x6000, size: 1) == nil)
        #expect(index.overlap(offset: 0, size: 0) == nil)
        // A range far larger than the index is checked through the index.
        #expect(index.overlap(offset: 0x5000, size: 1 << 40) == .snapshotTable)
        #expect(index.overlap(offset: 0x4000, size: 1 << 40, ignoring: [.activeL1, .snapshotTable, .inactiveL1]) == .activeL2)
        #expect(index.overlap(offset: 0x5000, size: 1 << 40, ignoring: [.snapshotTable, .inactiveL1]) == nil)
    }

    @Test("freed regions queue for discard and merge when adjacent")
    func discardQueue() {
        var queue = DiscardQueue()
        queue.add(offset: 0x3000, length: 0x1000)
        queue.add(offset: 0x1000, length: 0x1000)
        queue.add(offset: 0x2000, length: 0x1000)
        queue.add(offset: 0x8000, length: 0x1000)
        #expect(queue.regions.map { [$0.offset, $0.length] } == [[0x1000, 0x3000], [0x8000, 0x1000]])
        #expect(queue.take().count == 2)
        #expect(queue.regions.isEmpty)
        #expect(DiscardType.request.passesThrough && !DiscardType.never.passesThrough && !DiscardType.other.passesThrough)
    }

    @Test("subcluster ranges are bitmap bits")
    func subclusterRange() {
        #expect(SubclusterRange(first: 2, end: 5).allocatedBits == 0b11100)
        #expect(SubclusterRange(first: 2, end: 5).zeroBits == 0b11100 << 32)
        #expect(SubclusterRange(first: 0, end: 32).allocatedBits == 0xffff_ffff)
        #expect(SubclusterRange(first: 31, end: 32).zeroBits == 1 << 63)
        #expect(SubclusterRange(first: 3, end: 3).allocatedBits == 0)
    }

    @Test("a cache that depends on another flushes it before writing its own entries")
    func cacheOrdering() throws {
        let dir = try TestDirectory()
        let file = try BlockFile.create(path: dir.file("cache"))
        var log: [String] = []
        func cache(_ name: String) -> MetadataCache<CachedCluster> {
            let cache = MetadataCache<CachedCluster>(file: file, clusterSize: 512, capacity: 2) {
                CachedCluster(offset: $0, count: 512)
            }
            cache.checkBeforeWrite = { offset, _ in log.append("\(name)@\(offset)") }
            return cache
        }
        let l2 = cache("l2"), refcounts = cache("rc")
        (try l2.getEmpty(512)).bytes[0] = 1
        (try refcounts.getEmpty(1024)).bytes[0] = 2
        try l2.setDependency(on: refcounts)
        try l2.writeBack()
        #expect(log == ["rc@1024", "l2@512"])
        #expect(l2.dependency == nil)
        // Evicting a dirty entry writes its dependency first, too.
        log = []
        (try refcounts.get(1024)).isDirty = true
        (try refcounts.getEmpty(1536)).isDirty = true
        (try l2.get(512)).isDirty = true
        try refcounts.setDependency(on: l2)
        _ = try refcounts.getEmpty(2048)   // evicts 1024, the least recently used
        #expect(log == ["l2@512", "rc@1024"])
        // Discarded entries are never written.
        log = []
        let entry = try l2.getEmpty(4096)
        entry.isDirty = true
        l2.discard(4096)
        try l2.writeBack()
        #expect(!log.contains("l2@4096"))
        try file.close()
    }
}
