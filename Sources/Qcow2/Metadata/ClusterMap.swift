// Guest offset -> host cluster, through the active L1 table and the L2 tables
// (docs/interop/qcow2.txt, "Cluster mapping"). The L1 table is read whole on
// open; L2 tables are read on demand into a bounded LRU cache. Both belong to
// the image's metadata lock (`ClusterTables`, in `MetadataCore`), which is
// never held for data I/O; the geometry (`MapGeometry`) is immutable and
// shared. For read-only images the lock is not held for table reads either,
// so concurrent readers do not serialise on each other's misses; for writable
// images the write path changes tables in place, so lookups read them under
// the lock.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A run of guest bytes that one lookup found mapped alike.
struct MappedExtent: Equatable {
    /// Never `.invalid`: invalid entries are reported as corruption.
    var type: SubclusterType
    var length: UInt64
    /// Host offset of the first byte, for `.normal`, `.zeroAllocated` and
    /// `.unallocatedAllocated` (contiguous for the whole run).
    var hostOffset: UInt64?
    /// Where the cluster's compressed bytes are, for `.compressed` (which
    /// never spans more than one cluster).
    var compressed: CompressedClusterDescriptor?
}

/// The image's mapping geometry, and the mapping steps that need nothing else.
struct MapGeometry: Sendable {
    let file: BlockFile
    let version: UInt32
    let clusterBits: UInt32
    let clusterSize: UInt64
    /// log2 of the entries per L2 table.
    let l2Bits: UInt32
    let extendedL2: Bool
    let subclusterBits: UInt32
    let subclustersPerCluster: Int
    var subclusterSize: UInt64 { 1 << UInt64(subclusterBits) }

    init(file: BlockFile, header: Qcow2Header) {
        self.file = file
        version = header.version
        clusterBits = header.clusterBits
        clusterSize = header.clusterSize
        l2Bits = header.l2Bits
        extendedL2 = header.hasExtendedL2
        subclustersPerCluster = Int(header.subclustersPerCluster)
        subclusterBits = header.clusterBits - (header.hasExtendedL2 ? 5 : 0)
    }
}

/// Maps guest offsets for readers (and the write path's own reads): the
/// geometry, and the metadata lock that owns the tables.
final class ClusterMap: Sendable {
    let geometry: MapGeometry
    /// Whether the tables may change (the image is open for writing): lookups
    /// then read tables, even from disk, under the lock.
    let isWritable: Bool
    /// Owns the tables, and for writable images everything the write path
    /// keeps (QEMU's s->lock).
    let lock: MetadataLock<MetadataCore>

    var file: BlockFile { geometry.file }
    var clusterSize: UInt64 { geometry.clusterSize }

    init(file: BlockFile, header: Qcow2Header, cacheCapacity: Int? = nil) throws {
        geometry = MapGeometry(file: file, header: header)
        isWritable = file.isWritable
        lock = MetadataLock(MetadataCore(
            tables: try ClusterTables(geometry: geometry, header: header, writable: isWritable, cacheCapacity: cacheCapacity)))
    }

    /// See Qcow2Image.corruptionSignaled.
    var corruptionSignaled: Bool { isWritable && lock.withLock { $0.writer?.corruption != nil } }

    var l2CacheCapacity: Int { lock.withLock { $0.tables.l2Tables.capacity } }
    var l2CacheCount: Int { lock.withLock { $0.tables.l2Tables.count } }

    /// Maps the guest range [offset, offset + length) as far as it is mapped
    /// alike: one type, contiguous host offsets, within one L2 table, one
    /// cluster for compressed data (QEMU's qcow2_get_host_offset).
    func lookup(at offset: UInt64, length: UInt64) throws -> MappedExtent {
        if isWritable {
            return try lock.withLock { core in
                // Marked corrupt, the image has lost its driver, as QEMU's node
                // does (qcow2_signal_corruption): nothing more is read or mapped.
                if core.writer?.corruption != nil { throw Qcow2Error.io(step: "read", errno: ENOMEDIUM) }
                return try core.tables.lookup(at: offset, length: length)
            }
        }
        // Tables of a read-only image never change: a miss is read without
        // the lock, so that readers do not wait for each other's misses, and
        // a table is read after the lock is let go (the one reference taken
        // out of the core, see MetadataLock.swift).
        precondition(length > 0)
        let g = geometry
        let l1Index = offset >> UInt64(g.clusterBits + g.l2Bits)
        let (l1Entry, cached): (UInt64?, L2Table?) = lock.withLock { core in
            let tables = core.tables
            guard l1Index < UInt64(tables.l1.count) else { return (nil, nil) }
            let entry = tables.l1[Int(l1Index)]
            return (entry, tables.l2Tables.cached(entry & Qcow2EntryMask.offset))
        }
        guard let l1Entry, l1Entry & Qcow2EntryMask.offset != 0 else { return g.unallocated(at: offset, length: length) }
        try g.checkL1Entry(l1Entry, l1Index: l1Index)
        if let cached { return try g.extent(at: offset, length: length, in: cached) }
        let tableOffset = l1Entry & Qcow2EntryMask.offset
        try g.checkL2Offset(tableOffset, l1Index: l1Index)
        let loaded = L2Table(offset: tableOffset, clusterSize: Int(g.clusterSize), extendedL2: g.extendedL2)
        try g.file.read(into: loaded.bytes, at: tableOffset)
        let table = try lock.withLock { try $0.tables.l2Tables.insertLoaded(loaded) }
        return try g.extent(at: offset, length: length, in: table)
    }
}

/// The active L1 table and the L2 cache: owned by the metadata lock
/// (`MetadataCore`), so every method runs with it held.
final class ClusterTables {
    let geometry: MapGeometry
    /// The active L1 table.
    var l1: [UInt64]
    /// The L2 table cache.
    let l2Tables: MetadataCache<L2Table>

    /// An L1 table (the active one, or a snapshot's), host-endian.
    static func readL1(_ file: BlockFile, offset: UInt64, count: UInt32) throws -> [UInt64] {
        let l1Bytes = Int(count) * 8
        var l1 = [UInt64](repeating: 0, count: Int(count))
        if l1Bytes > 0 {
            let got = try l1.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
            guard got == l1Bytes else {
                throw Qcow2Error.shortRead(step: "reading the L1 table", offset: offset, expected: l1Bytes)
            }
            for i in l1.indices { l1[i] = UInt64(bigEndian: l1[i]) }
        }
        return l1
    }

    init(geometry: MapGeometry, header: Qcow2Header, writable: Bool, cacheCapacity: Int?) throws {
        self.geometry = geometry
        let file = geometry.file
        // Placement and size were validated with the header (at most 32 MiB).
        l1 = try Self.readL1(file, offset: header.l1TableOffset, count: header.l1Size)
        let capacity = cacheCapacity ?? L2Cache.defaultCapacity(
            virtualSize: header.size, clusterSize: header.clusterSize, l2EntrySize: header.l2EntrySize)
        let size = Int(header.clusterSize)
        let extendedL2 = geometry.extendedL2
        // The write path holds a table or two while loading another.
        l2Tables = MetadataCache(file: file, clusterSize: size, capacity: max(writable ? 4 : 1, capacity)) {
            L2Table(offset: $0, clusterSize: size, extendedL2: extendedL2)
        }
    }

    /// `ClusterMap.lookup`, for the lock's holder.
    func lookup(at offset: UInt64, length: UInt64) throws -> MappedExtent {
        precondition(length > 0)
        let g = geometry
        let l1Index = offset >> UInt64(g.clusterBits + g.l2Bits)
        guard l1Index < UInt64(l1.count), l1[Int(l1Index)] & Qcow2EntryMask.offset != 0 else {
            return g.unallocated(at: offset, length: length)
        }
        let l1Entry = l1[Int(l1Index)]
        try g.checkL1Entry(l1Entry, l1Index: l1Index)
        let table = try l2Table(at: l1Entry & Qcow2EntryMask.offset, l1Index: l1Index)
        return try g.extent(at: offset, length: length, in: table)
    }

    /// The L2 table at `offset`, from the cache or read from disk.
    func l2Table(at offset: UInt64, l1Index: UInt64) throws -> L2Table {
        if let table = l2Tables.cached(offset) { return table }
        try geometry.checkL2Offset(offset, l1Index: l1Index)
        return try l2Tables.get(offset)
    }
}

extension MapGeometry {
    /// The bytes from `offset` needed to cover `length`, but never past the
    /// L2 table that maps `offset`, counted from the start of its cluster.
    private func neededBytes(at offset: UInt64, length: UInt64) -> UInt64 {
        let inCluster = offset & (clusterSize - 1)
        let l2Entries = UInt64(1) << UInt64(l2Bits)
        let l2Index = (offset >> UInt64(clusterBits)) & (l2Entries - 1)
        let toTableEnd = (l2Entries - l2Index) << UInt64(clusterBits)
        return length >= toTableEnd - inCluster ? toTableEnd : length + inCluster
    }

    fileprivate func unallocated(at offset: UInt64, length: UInt64) -> MappedExtent {
        MappedExtent(type: .unallocatedPlain, length: neededBytes(at: offset, length: length) - (offset & (clusterSize - 1)))
    }

    fileprivate func checkL1Entry(_ l1Entry: UInt64, l1Index: UInt64) throws {
        if l1Entry & Qcow2EntryMask.l1Reserved != 0 {
            throw Qcow2Error.corruptMetadata("L1 entry \(hex(l1Entry)) has reserved bits set (L1 index: \(hex(l1Index)))")
        }
    }

    /// Classifies the run at `offset` in `table`, the L2 table mapping it.
    fileprivate func extent(at offset: UInt64, length: UInt64, in table: L2Table) throws -> MappedExtent {
        let inCluster = offset & (clusterSize - 1)
        let needed = neededBytes(at: offset, length: length)
        let l2Index = Int((offset >> UInt64(clusterBits)) & ((UInt64(1) << UInt64(l2Bits)) - 1))
        let first = Int(inCluster >> UInt64(subclusterBits))
        let entry = table.entry(l2Index)
        let type = SubclusterClassification.type(
            entry: entry, bitmap: table.bitmap(l2Index), index: first, extendedL2: extendedL2)
        try checkEntry(entry, type: type, table: table, index: l2Index)

        var result = MappedExtent(type: type, length: 0)
        switch type {
        case .compressed:
            result.compressed = CompressedClusterDescriptor(entry: L2Entry(rawValue: entry), clusterBits: clusterBits)
        case .normal, .zeroAllocated, .unallocatedAllocated:
            let host = entry & Qcow2EntryMask.offset
            guard host & (clusterSize - 1) == 0 else {
                throw Qcow2Error.corruptMetadata(
                    "Cluster allocation offset \(hex(host)) unaligned (L2 offset: \(hex(table.offset)), L2 index: \(hex(l2Index)))")
            }
            result.hostOffset = host + inCluster
        case .zeroPlain, .unallocatedPlain, .invalid:
            break
        }

        let subclusters = try countContiguousSubclusters(
            table: table, from: l2Index, firstSubcluster: first, clusters: Int(divideRoundingUp(needed, clusterSize)))
        let available = UInt64(subclusters + first) << UInt64(subclusterBits)
        result.length = min(available, needed) - inCluster
        return result
    }

    /// How many subclusters, from subcluster `first` of entry `index` on, share
    /// that subcluster's type (and for allocated types, contiguous host
    /// clusters), looking at no more than `clusters` entries.
    private func countContiguousSubclusters(table: L2Table, from index: Int, firstSubcluster first: Int, clusters: Int) throws -> Int {
        var count = 0
        var expectedType = SubclusterType.invalid
        var expectedHost: UInt64 = 0
        var checkHost = false
        for i in 0..<clusters {
            let entry = table.entry(index + i)
            let start = i == 0 ? first : 0
            let (type, n) = SubclusterClassification.run(
                entry: entry, bitmap: table.bitmap(index + i), from: start, extendedL2: extendedL2)
            if i == 0 {
                // `lookup` has already checked the first entry.
                if type == .compressed { return n }
                expectedType = type
                expectedHost = entry & Qcow2EntryMask.offset
                checkHost = type == .normal || type == .zeroAllocated || type == .unallocatedAllocated
            } else {
                // A suspicious entry ends the run; the lookup starting at it reports it.
                if type != expectedType || type == .invalid || hasReservedBits(entry) { break }
                if checkHost {
                    expectedHost += clusterSize
                    if entry & Qcow2EntryMask.offset != expectedHost { break }
                }
            }
            count += n
            // The type changes inside this cluster.
            if start + n < subclustersPerCluster { break }
        }
        return count
    }

    private func hasReservedBits(_ entry: UInt64) -> Bool {
        entry & Qcow2EntryMask.compressed == 0 && entry & Qcow2EntryMask.l2Reserved != 0
    }

    private func checkEntry(_ entry: UInt64, type: SubclusterType, table: L2Table, index: Int) throws {
        // Built only for an error: the hot path allocates nothing.
        func place() -> String { "(L2 offset: \(hex(table.offset)), L2 index: \(hex(index)))" }
        if type == .invalid {
            throw Qcow2Error.corruptMetadata("Invalid cluster entry found \(place())")
        }
        if hasReservedBits(entry) {
            throw Qcow2Error.corruptMetadata("L2 entry \(hex(entry)) has reserved bits set \(place())")
        }
        if version < 3 && (type == .zeroPlain || type == .zeroAllocated) {
            throw Qcow2Error.corruptMetadata("Zero cluster entry found in pre-v3 image \(place())")
        }
    }

    fileprivate func checkL2Offset(_ offset: UInt64, l1Index: UInt64) throws {
        guard offset & (clusterSize - 1) == 0 else {
            throw Qcow2Error.corruptMetadata("L2 table offset \(hex(offset)) unaligned (L1 index: \(hex(l1Index)))")
        }
        // A table that starts inside the file is read with its tail as
        // zeroes (a file may end inside its last cluster); one that starts at
        // or past the end is what the check reports as corruption.
        let fileSize = try file.size()
        guard offset < fileSize else {
            throw Qcow2Error.corruptMetadata("L2 table offset \(hex(offset)) is beyond the end of the file (L1 index: \(hex(l1Index)))")
        }
    }
}

/// QEMU's "%#x": 0 as "0", anything else with a 0x prefix.
func hex<T: BinaryInteger>(_ value: T) -> String {
    value == 0 ? "0" : "0x" + String(value, radix: 16)
}
