// Internal snapshots through the library: what sharing a cluster tree means
// for the write path (copy-on-write of shared data clusters and L2 tables,
// COPIED flags cleared and restored), IDs and lookups as QEMU makes them,
// and refusals. The byte-for-byte comparison with qemu-img is in
// Tests/InteropTests/SnapshotInteropTests.swift.
import Testing
@testable import Qcow2

@Suite struct SnapshotOperationTests {
    static let clusterSize: UInt64 = 65536

    func read(_ image: Qcow2Image, _ count: Int, at offset: UInt64) throws -> [UInt8] {
        try image.read(count, at: offset)
    }

    /// Entry `index` of the active L1 table, as the image has it now.
    func l1Entry(_ image: Qcow2Image, _ index: Int) -> UInt64 {
        image.clusterMap.lock.withLock { core in core.tables.l1[index] }
    }

    @Test("a guest write after a snapshot copies the shared cluster and L2 table; apply and delete restore ownership")
    func copyOnWriteOfSharedClusters() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 4 << 20)
        let image = try WriteFixture.openWritable(path)
        defer { try? image.close() }
        let old = WriteFixture.pattern(1, count: 2 * Int(Self.clusterSize))
        try WriteFixture.write(image, old, at: 0)
        let (before, _) = try #require(try WriteFixture.l2Entry(image, at: 0))
        #expect(before & Qcow2EntryMask.copied != 0)
        let l1Before = l1Entry(image, 0)
        #expect(l1Before & Qcow2EntryMask.copied != 0)

        let info = try image.createSnapshot(name: "s")
        #expect(info.id == "1" && info.name == "s")
        // Shared now: refcount 2, no COPIED flag on the L2 entry or the L1 entry.
        let (shared, _) = try #require(try WriteFixture.l2Entry(image, at: 0))
        let host = shared & Qcow2EntryMask.offset
        #expect(shared & Qcow2EntryMask.copied == 0 && host == before & Qcow2EntryMask.offset)
        #expect(try WriteFixture.refcount(image, ofCluster: host / Self.clusterSize) == 2)
        #expect(l1Entry(image, 0) & Qcow2EntryMask.copied == 0)
        try WriteFixture.expectConsistent(image)

        // A write into part of the shared cluster goes to a new cluster,
        // with the rest copied; the snapshot keeps the old one.
        let new = WriteFixture.pattern(2, count: 4096)
        try WriteFixture.write(image, new, at: 4096)
        let (written, _) = try #require(try WriteFixture.l2Entry(image, at: 0))
        #expect(written & Qcow2EntryMask.copied != 0)
        #expect(written & Qcow2EntryMask.offset != host)
        #expect(try WriteFixture.refcount(image, ofCluster: host / Self.clusterSize) == 1)
        let l1After = l1Entry(image, 0)
        #expect(l1After & Qcow2EntryMask.copied != 0)
        #expect(l1After & Qcow2EntryMask.offset != l1Before & Qcow2EntryMask.offset)
        var expected = old
        expected.replaceSubrange(4096..<8192, with: new)
        #expect(try read(image, old.count, at: 0) == expected)
        // The second cluster was not written: still shared.
        let (second, _) = try #require(try WriteFixture.l2Entry(image, at: Self.clusterSize))
        #expect(second & Qcow2EntryMask.copied == 0)
        try WriteFixture.expectConsistent(image)

        // Back to the snapshot: the old bytes; the clusters written since are freed.
        try image.applySnapshot("s")
        #expect(try read(image, old.count, at: 0) == old)
        try WriteFixture.expectConsistent(image)

        // Deleting the snapshot leaves the active tree sole owner again.
        try image.deleteSnapshot(name: "s")
        #expect(try image.listSnapshots().isEmpty)
        let (owned, _) = try #require(try WriteFixture.l2Entry(image, at: 0))
        #expect(owned & Qcow2EntryMask.copied != 0)
        #expect(try WriteFixture.refcount(image, ofCluster: (owned & Qcow2EntryMask.offset) / Self.clusterSize) == 1)
        #expect(l1Entry(image, 0) & Qcow2EntryMask.copied != 0)
        #expect(try read(image, old.count, at: 0) == old)
        try WriteFixture.expectConsistent(image)
    }

    @Test("IDs: one more than the largest, read as strtoul reads it")
    func nextID() {
        func table(_ ids: [String]) -> SnapshotTable {
            SnapshotTable(entries: ids.map { SnapshotEntry(l1TableOffset: 0, l1Size: 0, id: $0, name: "n") })
        }
        #expect(table([]).nextID == "1")
        #expect(table(["1", "7", "3"]).nextID == "8")
        #expect(table(["abc", " 12x"]).nextID == "13")
        #expect(table(["-1"]).nextID == "0")   // strtoul negates: ULONG_MAX, plus one wraps
        #expect(table(["99999999999999999999999"]).nextID == "0")  // ULONG_MAX on overflow
    }

    @Test("lookups: apply tries IDs first, then names; duplicates resolve to the first")
    func lookups() {
        let entries = [("1", "b"), ("2", "a"), ("3", "a"), ("4", "1")].map {
            SnapshotEntry(l1TableOffset: 0, l1Size: 0, id: $0.0, name: $0.1)
        }
        let table = SnapshotTable(entries: entries)
        #expect(table.index(idOrName: "1") == 0)
        #expect(table.index(idOrName: "a") == 1)
        #expect(table.index(id: nil, name: "a") == 1)
        #expect(table.index(id: "3", name: "a") == 2)
        #expect(table.index(id: "3", name: "b") == nil)
        #expect(table.index(id: nil, name: nil) == nil)
        #expect(table.index(idOrName: "z") == nil)
    }

    @Test("refusals: unknown snapshots, read-only images, a full table; nothing is written")
    func refusals() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 1 << 20)
        let image = try WriteFixture.openWritable(path)
        #expect(throws: SnapshotError.notFound) { try image.applySnapshot("x") }
        #expect(throws: SnapshotError.notFound) { try image.deleteSnapshot(name: "x") }

        let filler = SnapshotEntry(l1TableOffset: 0, l1Size: 0, id: "1", name: "n")
        try image.withWriter { writer, _ in
            writer.snapshots.entries = Array(repeating: filler, count: Int(Qcow2Limits.maxSnapshots))
        }
        let size = try WriteFixture.fileSize(path)
        #expect(throws: SnapshotError.tooManySnapshots) { try image.createSnapshot(name: "one too many") }
        #expect(try WriteFixture.fileSize(path) == size)
        try image.withWriter { writer, _ in writer.snapshots.entries = [] }
        try image.close()

        let readOnly = try Qcow2Image.open(path: path)
        defer { try? readOnly.close() }
        #expect(throws: Qcow2Error.readOnly) { try readOnly.createSnapshot(name: "s") }
        #expect(try readOnly.listSnapshots().isEmpty)
    }

    @Test("a name is kept to QEMU's 255 bytes")
    func longNames() throws {
        let dir = try TestDirectory()
        let image = try WriteFixture.openWritable(try WriteFixture.create(dir, size: 1 << 20))
        defer { try? image.close() }
        let info = try image.createSnapshot(name: String(repeating: "n", count: 300))
        #expect(info.name.utf8.count == 255)
    }
}
