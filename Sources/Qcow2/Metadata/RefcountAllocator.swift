// Cluster allocation, step for step as QEMU 7.2's qcow2-refcount.c does it, so
// that every refcount block, refcount table and allocated cluster lands where
// QEMU puts it, both when an image is created and when it is written:
//  - clusters are searched from a moving "free cluster index";
//  - a refcount update that needs a new refcount block allocates it first,
//    then makes the caller undo its partial update and search again (QEMU's
//    -EAGAIN), since the block may sit where the caller meant to allocate;
//  - a refcount table that is too small is replaced by a new table plus
//    self-describing blocks placed past everything they must cover, and the
//    old table's clusters are freed (their stale bytes stay in the file);
//  - a cluster whose refcount drops to zero is forgotten by the caches and,
//    for the kinds of frees that pass discards through, punched out of the
//    file (see DiscardQueue.swift).
// An open image's allocator belongs to its metadata core (MetadataCore.swift):
// it is reached only with its lock held.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// QEMU's -EAGAIN: refcount metadata was allocated; restart the search.
struct AllocationRestart: Error {}

final class RefcountAllocator {
    let file: BlockFile
    let blocks: MetadataCache<CachedCluster>
    let clusterBits: UInt64
    let clusterSize: UInt64
    let width: RefcountWidth
    /// log2 of the entries in one refcount block.
    let refblockBits: UInt64
    var refblockSize: UInt64 { 1 << refblockBits }

    /// Refcount block offsets, as in the on-disk table.
    private(set) var table: [UInt64]
    private(set) var tableOffset: UInt64
    /// Index of the last table entry naming a block (max_refcount_table_index).
    private(set) var maxTableIndex: Int
    /// Where the next search for free clusters starts (QEMU's free_cluster_index).
    var freeClusterIndex: UInt64 = 0
    /// Where the next compressed cluster may start (QEMU's free_byte_offset).
    var freeByteOffset: UInt64 = 0
    /// The cluster `freeByteOffset` lies in was freed since.
    var freeByteClusterWasFreed = false
    /// How often compressed data was kept out of a freed and reallocated
    /// cluster, where QEMU 7.2 would have overwritten guest data (and the
    /// file therefore differs from QEMU's from then on).
    private(set) var reallocatedClusterRepackingAvoided = 0

    /// The L2 table cache: flushed before the refcount table changes, made a
    /// dependency of the refcount cache when refcounts drop, and told about
    /// freed clusters.
    weak var l2Tables: WriteBackCache?
    /// Single metadata writes that QEMU syncs (bdrv_pwrite_sync) are synced.
    var syncsWrites = false
    /// Called once a new refcount table is written, before it is used: the
    /// header must name it (offset, clusters).
    var tableReplaced: ((UInt64, UInt64) throws -> Void)?
    /// Called after the refcount table changed: one entry (its index), or
    /// the whole table (nil).
    var tableChanged: ((Int?) -> Void)?
    /// Freed clusters waiting to be discarded in the file.
    var discards = DiscardQueue()

    /// QEMU's QCOW_MAX_REFTABLE_SIZE, compared (as QEMU does) both with the
    /// number of refcount blocks and with the table's entry count.
    static let maxReftableSize: UInt64 = 8 << 20
    /// Host offsets must fit the 56-bit offset fields (QCOW_MAX_CLUSTER_OFFSET).
    static let maxClusterOffset: UInt64 = (1 << 56) - 1

    init(file: BlockFile, clusterBits: UInt32, width: RefcountWidth, tableOffset: UInt64, table: [UInt64],
         cacheCapacity: Int? = nil) {
        self.file = file
        self.clusterBits = UInt64(clusterBits)
        let clusterSize = UInt64(1) << UInt64(clusterBits)
        self.clusterSize = clusterSize
        self.width = width
        refblockBits = UInt64(clusterBits) + 3 - UInt64(width.order)
        blocks = MetadataCache(
            file: file, clusterSize: Int(clusterSize),
            capacity: cacheCapacity ?? Int(max(4, (8 << 20) / clusterSize))
        ) { CachedCluster(offset: $0, count: Int(clusterSize)) }
        self.table = table
        self.tableOffset = tableOffset
        maxTableIndex = RefcountTable(entries: table).lastUsedIndex
    }

    var tableClusters: UInt64 { UInt64(table.count) * 8 / clusterSize }

    func noteRepackingAvoided() { reallocatedClusterRepackingAvoided += 1 }

    // MARK: Reading refcounts

    func refcount(ofCluster index: UInt64) throws -> UInt64 {
        let tableIndex = index >> refblockBits
        guard tableIndex < UInt64(table.count) else { return 0 }
        let blockOffset = table[Int(tableIndex)] & Qcow2EntryMask.refcountTableOffset
        guard blockOffset != 0 else { return 0 }
        guard blockOffset & (clusterSize - 1) == 0 else {
            throw Qcow2Error.corruptMetadata("Refblock offset \(hex(blockOffset)) unaligned (reftable index: \(hex(tableIndex)))")
        }
        let block = try blocks.get(blockOffset)
        let entry = Int(index & (refblockSize - 1))
        return RefcountCoding.get(block.readOnlyBytes, index: entry, width: width)
    }

    /// For scans in cluster order (the check's comparison), without I/O: a
    /// copy of the refcount block covering cluster `index` if it is cached,
    /// [] when the table names no block (every refcount zero), nil otherwise.
    func cachedRefcountBlock(forCluster index: UInt64) -> [UInt8]? {
        let tableIndex = index >> refblockBits
        guard tableIndex < UInt64(table.count) else { return [] }
        let blockOffset = table[Int(tableIndex)] & Qcow2EntryMask.refcountTableOffset
        guard blockOffset != 0 else { return [] }
        return blocks.cached(blockOffset).map { Array($0.readOnlyBytes) }
    }

    /// The last cluster below `fileSize` with a non-zero refcount
    /// (qcow2_get_last_cluster).
    func lastUsedCluster(fileSize: UInt64) throws -> UInt64 {
        var i = Int64(divideRoundingUp(fileSize, clusterSize)) - 1
        while i >= 0 {
            if try refcount(ofCluster: UInt64(i)) > 0 { return UInt64(i) }
            i -= 1
        }
        throw Qcow2Error.corruptMetadata("There are no references in the refcount table.")
    }

    // MARK: Allocation

    /// Finds `size` bytes of free clusters from the free cluster index without
    /// taking a reference (alloc_clusters_noref).
    func allocateWithoutReference(_ size: UInt64, limit: UInt64) throws -> UInt64 {
        // Clusters still queued for discard must not be handed out first.
        if discards.isDeferring { processDiscards(succeeded: true) }
        let count = divideRoundingUp(size, clusterSize)
        var found: UInt64 = 0
        while found < count {
            let index = freeClusterIndex
            freeClusterIndex += 1
            found = try refcount(ofCluster: index) != 0 ? 0 : found + 1
        }
        if freeClusterIndex > 0 && freeClusterIndex - 1 > (limit >> clusterBits) { throw FileTooLarge() }
        return (freeClusterIndex - count) << clusterBits
    }

    /// Allocates `size` bytes of contiguous clusters (qcow2_alloc_clusters).
    func allocateClusters(_ size: UInt64) throws -> UInt64 {
        while true {
            let offset = try allocateWithoutReference(size, limit: Self.maxClusterOffset)
            do {
                try updateRefcount(offset: offset, length: size, addend: 1, decrease: false, type: .never)
                return offset
            } catch is AllocationRestart {
                continue
            }
        }
    }

    /// Allocates up to `count` clusters at exactly `offset`, stopping at the
    /// first one in use; returns how many (qcow2_alloc_clusters_at).
    func allocateClusters(at offset: UInt64, count: UInt64) throws -> UInt64 {
        guard count > 0 else { return 0 }
        while true {
            var index = offset >> clusterBits
            var free: UInt64 = 0
            while free < count, try refcount(ofCluster: index) == 0 {
                index += 1
                free += 1
            }
            do {
                try updateRefcount(offset: offset, length: free << clusterBits, addend: 1, decrease: false, type: .never)
                return free
            } catch is AllocationRestart {
                continue
            }
        }
    }

    /// qcow2_free_clusters' refcount update; the write path reports a failure
    /// and goes on, as QEMU does (Write/ClusterFreeing.swift).
    func freeClusters(offset: UInt64, length: UInt64, type: DiscardType) throws {
        try updateRefcount(offset: offset, length: length, addend: 1, decrease: true, type: type)
    }

    // MARK: Refcount updates

    /// Adds `addend` to (or subtracts it from) the refcount of every cluster
    /// in the range; on any failure the clusters already updated are put back,
    /// and the error (possibly `AllocationRestart`) is rethrown. A refcount
    /// leaving the entry's range fails (QEMU's -EINVAL).
    func updateRefcount(offset: UInt64, length: UInt64, addend: UInt64, decrease: Bool, type: DiscardType) throws {
        guard length > 0 else { return }
        // Ordering: references are removed (L2 tables written) before the
        // refcounts that counted them drop.
        if decrease, let l2Tables { try blocks.setDependency(on: l2Tables) }
        let mask = ~(clusterSize - 1)
        let last = (offset + length - 1) & mask
        var clusterOffset = offset & mask
        var currentTableIndex: UInt64?
        var block: CachedCluster?
        var failure: Error?
        do {
            while clusterOffset <= last {
                let clusterIndex = clusterOffset >> clusterBits
                let tableIndex = clusterIndex >> refblockBits
                if tableIndex != currentTableIndex || block == nil {
                    block = nil
                    let blockOffset: UInt64
                    do {
                        blockOffset = try refcountBlock(forCluster: clusterIndex)
                    } catch let restart as AllocationRestart {
                        // The search restarts no later than this range's start.
                        freeClusterIndex = min(freeClusterIndex, (offset & mask) >> clusterBits)
                        throw restart
                    }
                    block = try blocks.get(blockOffset)
                }
                currentTableIndex = tableIndex
                guard let current = block else { break }
                current.isDirty = true
                let entry = Int(clusterIndex & (refblockSize - 1))
                var value = RefcountCoding.get(current.readOnlyBytes, index: entry, width: width)
                if decrease {
                    guard value >= addend else { throw refcountRangeError(clusterIndex, value, addend, decrease) }
                    value -= addend
                } else {
                    guard value <= width.maxValue - addend else { throw refcountRangeError(clusterIndex, value, addend, decrease) }
                    // A free cluster is taken: it may have been freed by an
                    // L2 update still only in the cache (see below).
                    if value == 0 { try writeDroppedReferences() }
                    value += addend
                }
                if value == 0 && clusterIndex < freeClusterIndex { freeClusterIndex = clusterIndex }
                RefcountCoding.set(current.bytes, index: entry, value: value, width: width)
                if value == 0 {
                    // Remember that compressed data was about to continue
                    // into a cluster now freed (see ByteAllocation.swift).
                    if freeByteOffset & ~(clusterSize - 1) == clusterOffset { freeByteClusterWasFreed = true }
                    // A freed table must never be written back from a cache.
                    if blocks.cached(clusterOffset) != nil {
                        blocks.discard(clusterOffset)
                        if current.offset == clusterOffset { block = nil }
                    }
                    l2Tables?.discard(clusterOffset)
                    if type.passesThrough { discards.add(offset: clusterOffset, length: clusterSize) }
                }
                clusterOffset += clusterSize
            }
        } catch {
            failure = error
        }
        if !discards.isDeferring { processDiscards(succeeded: failure == nil) }
        if let failure {
            // Clusters from the first one (`offset` may be unaligned: a
            // compressed cluster's data) up to the one that failed.
            let first = offset & mask
            // QEMU's rollback drops its own result too: the first error is the one.
            try? updateRefcount(offset: first, length: clusterOffset - first, addend: addend,
                                decrease: !decrease, type: .never)
            throw failure
        }
    }

    /// Flushes the L2 tables whose dropped references freed clusters (the
    /// refcount cache's dependency) before a free cluster is handed out
    /// again. Until then an L2 entry in the file may still name it: new data
    /// written there would show through that entry after a crash (another
    /// guest offset's data). QEMU 7.2 flushes these tables only when the new
    /// cluster is linked, after its data: the same flush, earlier, so the
    /// file ends the same.
    func writeDroppedReferences() throws {
        if blocks.dependency != nil { try blocks.flushDependency() }
    }

    private func refcountRangeError(_ cluster: UInt64, _ value: UInt64, _ addend: UInt64, _ decrease: Bool) -> Error {
        let change = decrease ? "decreased by \(addend)" : "increased by \(addend)"
        return Qcow2Error.writeFailed(
            errno: EINVAL,
            reason: "Refcount of cluster \(cluster) (\(value)) cannot be \(change) with \(width.bits)-bit refcounts")
    }

    private func inSameRefcountBlock(_ a: UInt64, _ b: UInt64) -> Bool {
        a >> (clusterBits + refblockBits) == b >> (clusterBits + refblockBits)
    }

    /// Writes bytes QEMU writes with bdrv_pwrite_sync.
    private func writeSynced(_ bytes: [UInt8], at offset: UInt64) throws {
        try file.write(bytes, at: offset)
        if syncsWrites { try file.flush() }
    }

    /// The offset of the refcount block covering `clusterIndex`. If there is
    /// none yet, allocates it (growing the table if needed) and throws
    /// `AllocationRestart` (alloc_refcount_block).
    private func refcountBlock(forCluster clusterIndex: UInt64) throws -> UInt64 {
        let tableIndex = clusterIndex >> refblockBits
        if tableIndex < UInt64(table.count) {
            let existing = table[Int(tableIndex)] & Qcow2EntryMask.refcountTableOffset
            if existing != 0 {
                guard existing & (clusterSize - 1) == 0 else {
                    throw Qcow2Error.corruptMetadata("Refblock offset \(hex(existing)) unaligned (reftable index: \(hex(tableIndex)))")
                }
                return existing
            }
        }

        // The refcount table is about to change: the L2 tables go first.
        try l2Tables?.flush()
        let newBlock = try allocateWithoutReference(clusterSize, limit: UInt64(Int64.max))
        guard newBlock != 0 else { throw Qcow2Error.corruptMetadata("Preventing invalid allocation of refcount block at offset 0") }

        if inSameRefcountBlock(newBlock, clusterIndex << clusterBits) {
            // The block describes itself.
            let block = try blocks.getEmpty(newBlock)
            let entry = Int((newBlock >> clusterBits) & (refblockSize - 1))
            RefcountCoding.set(block.bytes, index: entry, value: 1, width: width)
        } else {
            // Described by another block, which may itself need allocating.
            try updateRefcount(offset: newBlock, length: clusterSize, addend: 1, decrease: false, type: .never)
            try blocks.flush()
            _ = try blocks.getEmpty(newBlock)
        }
        // The new block is on disk before the table names it.
        try blocks.flush()

        if tableIndex < UInt64(table.count) {
            var entry = [UInt8](repeating: 0, count: 8)
            entry.setBE(newBlock, at: 0)
            try writeSynced(entry, at: tableOffset + tableIndex * 8)
            table[Int(tableIndex)] = newBlock
            maxTableIndex = max(maxTableIndex, Int(tableIndex))
            tableChanged?(Int(tableIndex))
            throw AllocationRestart()
        }

        // The table is full: build a new one past everything it must cover.
        let blocksUsed = divideRoundingUp(max(clusterIndex + 1, (newBlock >> clusterBits) + 1), refblockSize)
        let (clusters, overflow1) = blocksUsed.multipliedReportingOverflow(by: refblockSize)
        let (metaOffset, overflow2) = clusters.multipliedReportingOverflow(by: clusterSize)
        guard !overflow1, !overflow2 else { throw FileTooLarge() }
        _ = try createRefcountArea(
            at: metaOffset, additionalClusters: 0, exactSize: false,
            newBlockIndex: Int(tableIndex), newBlockOffset: newBlock)
        throw AllocationRestart()
    }

    // MARK: Refcount table replacement

    /// Forgets the refcount block of table entry `index`, once the table on
    /// disk no longer names it (RefcountTableShrink.swift).
    func forgetRefcountBlock(at index: Int) {
        table[index] = 0
        maxTableIndex = RefcountTable(entries: table).lastUsedIndex
        tableChanged?(nil)
    }

    /// Switches to a refcount table already written (and named by the
    /// header): a rebuilt refcount structure.
    func adoptTable(offset: UInt64, entries: [UInt64]) {
        table = entries
        tableOffset = offset
        maxTableIndex = RefcountTable(entries: table).lastUsedIndex
        tableChanged?(nil)
    }

    /// Writes, from `start` (the end of the used file), refcount blocks and a
    /// new refcount table that cover themselves and `additionalClusters`
    /// clusters after them, switches to the new table and frees the old one.
    /// Without `exactSize` the table gets 50% more entries than needed.
    /// Returns the offset just past the new structures (qcow2_refcount_area).
    func createRefcountArea(
        at start: UInt64, additionalClusters: UInt64, exactSize: Bool,
        newBlockIndex: Int, newBlockOffset: UInt64
    ) throws -> UInt64 {
        precondition(start % clusterSize == 0)
        let totalBlocks = RefcountMetadata.size(
            clusters: start / clusterSize + additionalClusters, clusterSize: clusterSize,
            width: width, generousIncrease: !exactSize
        ).refblockCount
        guard totalBlocks <= Self.maxReftableSize else { throw FileTooLarge() }
        let areaTableIndex = Int((start / clusterSize) / refblockSize)

        var tableSize = exactSize ? totalBlocks : totalBlocks + divideRoundingUp(totalBlocks, 2)
        let entriesPerCluster = clusterSize / 8
        tableSize = divideRoundingUp(tableSize, entriesPerCluster) * entriesPerCluster
        guard tableSize <= Self.maxReftableSize else { throw FileTooLarge() }
        let newTableClusters = tableSize * 8 / clusterSize

        var newTable = [UInt64](repeating: 0, count: Int(tableSize))
        let copied = tableSize > UInt64(maxTableIndex) ? maxTableIndex + 1 : Int(tableSize)
        for i in 0..<min(copied, table.count) { newTable[i] = table[i] }
        if newBlockOffset != 0 {
            precondition(UInt64(newBlockIndex) < totalBlocks)
            newTable[newBlockIndex] = newBlockOffset
        }

        // The blocks cover `start`, so the area's first table index is in range.
        precondition(areaTableIndex < Int(totalBlocks))
        var newBlocks: UInt64 = 0
        for i in areaTableIndex..<Int(totalBlocks) where newTable[i] == 0 { newBlocks += 1 }
        let newTableOffset = start + newBlocks * clusterSize
        let end = newTableOffset + newTableClusters * clusterSize

        var blockOffset = start
        for i in areaTableIndex..<Int(totalBlocks) {
            let block: CachedCluster
            if newTable[i] != 0 {
                block = try blocks.get(newTable[i])
            } else {
                block = try blocks.getEmpty(blockOffset)
                newTable[i] = blockOffset
                blockOffset += clusterSize
            }
            // Every cluster of the new structures this block covers gets refcount 1.
            let firstCovered = UInt64(i) * refblockSize * clusterSize
            if firstCovered < end {
                var j = firstCovered < start ? (start - firstCovered) / clusterSize : 0
                let endIndex = min((end - firstCovered) / clusterSize, refblockSize)
                while j < endIndex {
                    guard RefcountCoding.get(block.readOnlyBytes, index: Int(j), width: width) == 0 else {
                        throw Qcow2Error.corruptMetadata("refcount area at \(start) is not free")
                    }
                    RefcountCoding.set(block.bytes, index: Int(j), value: 1, width: width)
                    j += 1
                }
                block.isDirty = true
            }
        }
        precondition(blockOffset == newTableOffset)
        // Blocks, then the table, then the header naming the table.
        try blocks.flush()
        try writeSynced(RefcountTable(entries: newTable).encode(), at: newTableOffset)
        try tableReplaced?(newTableOffset, newTableClusters)

        let oldOffset = tableOffset
        let oldSize = UInt64(table.count)
        table = newTable
        tableOffset = newTableOffset
        maxTableIndex = RefcountTable(entries: table).lastUsedIndex
        tableChanged?(nil)
        try freeClusters(offset: oldOffset, length: oldSize * 8, type: .other)
        return end
    }
}
