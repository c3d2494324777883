// Guest offset -> host cluster, through the active L1 table and the L2 tables
// (docs/interop/qcow2.txt, "Cluster mapping"). The L1 table is read whole on
// open; L2 tables are read on demand into a bounded LRU cache. Both sit under
// one lock that is held only for table lookups, never for data I/O or disk
// reads, so concurrent readers do not serialise on each other's misses.

import Synchronization

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

final class ClusterMap: @unchecked Sendable {
    let file: BlockFile
    let version: UInt32
    let clusterBits: UInt32
    let clusterSize: UInt64
    /// log2 of the entries per L2 table.
    let l2Bits: UInt32
    let extendedL2: Bool
    let subclusterBits: UInt32
    let subclustersPerCluster: Int

    private struct State {
        var l1: [UInt64]
        var cache: L2Cache
    }
    private let state: Mutex<State>

    init(file: BlockFile, header: Qcow2Header, cacheCapacity: Int? = nil) throws {
        self.file = file
        version = header.version
        clusterBits = header.clusterBits
        clusterSize = header.clusterSize
        l2Bits = header.l2Bits
        extendedL2 = header.hasExtendedL2
        subclustersPerCluster = Int(header.subclustersPerCluster)
        subclusterBits = header.clusterBits - (header.hasExtendedL2 ? 5 : 0)

        // Placement and size were validated with the header (at most 32 MiB).
        let l1Bytes = Int(header.l1Size) * 8
        var l1 = [UInt64](repeating: 0, count: Int(header.l1Size))
        if l1Bytes > 0 {
            let got = try l1.withUnsafeMutableBytes { try file.read(into: $0, at: header.l1TableOffset) }
            guard got == l1Bytes else {
                throw Qcow2Error.shortRead(step: "reading the L1 table", offset: header.l1TableOffset, expected: l1Bytes)
            }
            for i in l1.indices { l1[i] = UInt64(bigEndian: l1[i]) }
        }
        let capacity = cacheCapacity ?? L2Cache.defaultCapacity(
            virtualSize: header.size, clusterSize: header.clusterSize, l2EntrySize: header.l2EntrySize)
        state = Mutex(State(l1: l1, cache: L2Cache(capacity: max(1, capacity))))
    }

    var l2CacheCapacity: Int { state.withLock { $0.cache.capacity } }
    var l2CacheCount: Int { state.withLock { $0.cache.count } }

    /// Maps the guest range [offset, offset + length) as far as it is mapped
    /// alike: one type, contiguous host offsets, within one L2 table, one
    /// cluster for compressed data (QEMU's qcow2_get_host_offset).
    func lookup(at offset: UInt64, length: UInt64) throws -> MappedExtent {
        precondition(length > 0)
        let inCluster = offset & (clusterSize - 1)
        let l2Entries = UInt64(1) << UInt64(l2Bits)
        let l2Index = Int((offset >> UInt64(clusterBits)) & (l2Entries - 1))
        // Never past the L2 table that maps `offset`.
        let toTableEnd = (l2Entries - UInt64(l2Index)) << UInt64(clusterBits)
        let needed = length >= toTableEnd - inCluster ? toTableEnd : length + inCluster

        let l1Index = offset >> UInt64(clusterBits + l2Bits)
        let l1Entry: UInt64? = state.withLock { l1Index < UInt64($0.l1.count) ? $0.l1[Int(l1Index)] : nil }
        guard let l1Entry, l1Entry & Qcow2EntryMask.offset != 0 else {
            return MappedExtent(type: .unallocatedPlain, length: needed - inCluster)
        }
        if l1Entry & Qcow2EntryMask.l1Reserved != 0 {
            throw Qcow2Error.corruptMetadata("L1 entry \(hex(l1Entry)) has reserved bits set (L1 index: \(hex(l1Index)))")
        }
        let table = try l2Table(at: l1Entry & Qcow2EntryMask.offset, l1Index: l1Index)

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
        let place = "(L2 offset: \(hex(table.offset)), L2 index: \(hex(index)))"
        if type == .invalid {
            throw Qcow2Error.corruptMetadata("Invalid cluster entry found \(place)")
        }
        if hasReservedBits(entry) {
            throw Qcow2Error.corruptMetadata("L2 entry \(hex(entry)) has reserved bits set \(place)")
        }
        if version < 3 && (type == .zeroPlain || type == .zeroAllocated) {
            throw Qcow2Error.corruptMetadata("Zero cluster entry found in pre-v3 image \(place)")
        }
    }

    /// The L2 table at `offset`, from the cache or read from disk. The read
    /// happens outside the lock; if two threads miss at once both read and the
    /// first to insert wins.
    func l2Table(at offset: UInt64, l1Index: UInt64) throws -> L2Table {
        if let table = state.withLock({ $0.cache.lookup(offset) }) { return table }
        guard offset & (clusterSize - 1) == 0 else {
            throw Qcow2Error.corruptMetadata("L2 table offset \(hex(offset)) unaligned (L1 index: \(hex(l1Index)))")
        }
        let fileSize = try file.size()
        guard offset <= fileSize, clusterSize <= fileSize - offset else {
            throw Qcow2Error.corruptMetadata("L2 table offset \(hex(offset)) is beyond the end of the file (L1 index: \(hex(l1Index)))")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(clusterSize), alignment: 8)
        defer { buffer.deallocate() }
        try file.read(into: buffer, at: offset)
        let table = L2Table(offset: offset, bigEndianBytes: UnsafeRawBufferPointer(buffer), extendedL2: extendedL2)
        return state.withLock { $0.cache.insert(table) }
    }
}

/// QEMU's "%#x": 0 as "0", anything else with a 0x prefix.
func hex<T: BinaryInteger>(_ value: T) -> String {
    value == 0 ? "0" : "0x" + String(value, radix: 16)
}
