// L2 entry classification and subcluster runs (the rules of the spec's
// "Extended L2 Entries" section), and the bounded L2 cache.
import Testing
@testable import Qcow2

@Suite("Read path: entry classification")
struct ReadPathClassificationTests {
    let host: UInt64 = 0x5_0000

    @Test("standard entries: unallocated, normal, zero (plain and allocated), compressed")
    func standardEntries() {
        func type(_ entry: UInt64) -> SubclusterType {
            SubclusterClassification.type(entry: entry, bitmap: 0, index: 0, extendedL2: false)
        }
        #expect(type(0) == .unallocatedPlain)
        #expect(type(host) == .normal)
        #expect(type(host | Qcow2EntryMask.copied) == .normal)
        #expect(type(1) == .zeroPlain)
        #expect(type(host | 1) == .zeroAllocated)
        #expect(type(Qcow2EntryMask.compressed | 0x1234) == .compressed)
        // Bit 0 inside a compressed descriptor is part of the offset, not a zero flag.
        #expect(type(Qcow2EntryMask.compressed | 1) == .compressed)
        #expect(SubclusterClassification.run(entry: host, bitmap: 0, from: 0, extendedL2: false) == (.normal, 1))
    }

    @Test("extended entries: per-subcluster kinds from the bitmap")
    func extendedEntries() {
        func type(_ entry: UInt64, _ allocated: UInt32, _ zero: UInt32, _ index: Int) -> SubclusterType {
            SubclusterClassification.type(entry: entry, bitmap: UInt64(zero) << 32 | UInt64(allocated), index: index, extendedL2: true)
        }
        #expect(type(host, 0b0001, 0b0010, 0) == .normal)
        #expect(type(host, 0b0001, 0b0010, 1) == .zeroAllocated)
        #expect(type(host, 0b0001, 0b0010, 2) == .unallocatedAllocated)
        #expect(type(0, 0, 0b0100, 2) == .zeroPlain)
        #expect(type(0, 0, 0b0100, 3) == .unallocatedPlain)
        // Standard bit 0 means nothing with extended entries.
        #expect(type(1, 0, 0, 0) == .unallocatedPlain)
        // Allocated and zero at once, or allocated without a host cluster: invalid.
        #expect(type(host, 0b1000, 0b1000, 0) == .invalid)
        #expect(type(0, 0b1000, 0, 0) == .invalid)
        #expect(type(Qcow2EntryMask.compressed | host, 0xffff, 0xffff, 5) == .compressed)
    }

    @Test("extended runs: how many subclusters share the first one's kind")
    func extendedRuns() {
        func run(_ entry: UInt64, _ allocated: UInt32, _ zero: UInt32, from first: Int) -> (SubclusterType, Int) {
            let r = SubclusterClassification.run(entry: entry, bitmap: UInt64(zero) << 32 | UInt64(allocated), from: first, extendedL2: true)
            return (r.type, r.count)
        }
        #expect(run(host, 0x0000_000f, 0, from: 0) == (.normal, 4))
        #expect(run(host, 0x0000_000f, 0, from: 2) == (.normal, 2))
        #expect(run(host, 0x0000_000f, 0, from: 4) == (.unallocatedAllocated, 28))
        #expect(run(host, 0xffff_ffff, 0, from: 0) == (.normal, 32))
        #expect(run(host, 0xffff_ffff, 0, from: 31) == (.normal, 1))
        #expect(run(host, 0x0000_00f0, 0x0000_0f00, from: 0) == (.unallocatedAllocated, 4))
        #expect(run(host, 0x0000_00f0, 0x0000_0f00, from: 8) == (.zeroAllocated, 4))
        #expect(run(0, 0, 0xffff_0000, from: 16) == (.zeroPlain, 16))
        #expect(run(0, 0, 0xffff_0000, from: 3) == (.unallocatedPlain, 13))
        #expect(run(0, 0, 0, from: 0) == (.unallocatedPlain, 32))
        #expect(run(Qcow2EntryMask.compressed | host, 0, 0, from: 7) == (.compressed, 25))
        #expect(run(host, 1, 1, from: 0).0 == .invalid)
    }
}

@Suite("Read path: L2 cache")
struct ReadPathL2CacheTests {
    private func table(_ offset: UInt64) -> L2Table {
        let bytes = [UInt8](repeating: 0, count: 512)
        return bytes.withUnsafeBytes { L2Table(offset: offset, bigEndianBytes: $0, extendedL2: false) }
    }

    @Test("evicts the least recently used table once full")
    func leastRecentlyUsedEviction() {
        var cache = L2Cache(capacity: 3)
        for offset: UInt64 in [512, 1024, 1536] { cache.insert(table(offset)) }
        #expect(cache.offsetsByRecency == [1536, 1024, 512])
        #expect(cache.lookup(512)?.offset == 512)           // now most recent
        cache.insert(table(2048))                           // evicts 1024
        #expect(cache.count == 3)
        #expect(cache.lookup(1024) == nil)
        #expect(cache.offsetsByRecency == [2048, 512, 1536])
        for offset in stride(from: UInt64(4096), to: 40960, by: 512) { cache.insert(table(offset)) }
        #expect(cache.count == 3)
        #expect(cache.offsetsByRecency == [40448, 39936, 39424])
    }

    @Test("a second insert of the same table keeps the first; removal frees a slot")
    func duplicatesAndRemoval() {
        var cache = L2Cache(capacity: 2)
        let first = table(512)
        #expect(cache.insert(first) === first)
        #expect(cache.insert(table(512)) === first)
        #expect(cache.count == 1)
        cache.insert(table(1024))
        cache.remove(512)
        #expect(cache.count == 1)
        cache.insert(table(1536))
        #expect(Set(cache.offsetsByRecency) == [1024, 1536])
    }

    @Test("default capacity: enough for the image, at most 32 MiB, at least two tables")
    func defaultCapacity() {
        let gib: UInt64 = 1 << 30
        // 1 GiB of 64 KiB clusters needs 2 tables (8-byte entries), 4 with extended L2.
        #expect(L2Cache.defaultCapacity(virtualSize: gib, clusterSize: 65536, l2EntrySize: 8) == 2)
        #expect(L2Cache.defaultCapacity(virtualSize: gib, clusterSize: 65536, l2EntrySize: 16) == 4)
        #expect(L2Cache.defaultCapacity(virtualSize: 1 << 20, clusterSize: 65536, l2EntrySize: 8) == 2)
        // 1 TiB would need 2048 tables: capped at 32 MiB = 512 tables.
        #expect(L2Cache.defaultCapacity(virtualSize: 1024 * gib, clusterSize: 65536, l2EntrySize: 8) == 512)
        #expect(L2Cache.defaultCapacity(virtualSize: gib, clusterSize: 512, l2EntrySize: 8) == 32768)
        #expect(L2Cache.defaultCapacity(virtualSize: 64 * gib, clusterSize: 512, l2EntrySize: 8) == 65536)
        #expect(L2Cache.defaultCapacity(virtualSize: 0, clusterSize: 2 << 20, l2EntrySize: 8) == 2)
    }

    @Test("reading an image with more L2 tables than cache slots stays within the bound")
    func boundedWhileReading() throws {
        let dir = try TestDirectory()
        var image = TestImage(size: 2 << 20)   // 64 L2 tables of 32 KiB each
        for l1Index in 0..<8 {
            let data = image.addCluster([UInt8](repeating: UInt8(l1Index + 1), count: 512))
            _ = image.addL2(l1Index: l1Index, words: [data | Qcow2EntryMask.copied])
        }
        try image.write(to: dir.file("a.qcow2"))
        let file = try BlockFile(path: dir.file("a.qcow2"), writable: false)
        let opened = try Qcow2Image(file: file)
        let map = try ClusterMap(file: file, header: opened.header, cacheCapacity: 3)
        for round in 0..<2 {
            for l1Index in 0..<8 {
                let extent = try map.lookup(at: UInt64(l1Index) << 15, length: 4096)
                #expect(extent.type == .normal, "round \(round)")
                #expect(extent.length == 512)
                #expect(map.l2CacheCount <= 3)
            }
        }
        #expect(map.l2CacheCapacity == 3)
        #expect(map.l2CacheCount == 3)
    }
}
