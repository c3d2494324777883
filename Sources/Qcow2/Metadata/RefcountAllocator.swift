// Cluster allocation on the image being created, step for step as QEMU 7.2's
// qcow2-refcount.c does it, so that every refcount block, refcount table and
// allocated cluster lands where QEMU puts it:
//  - clusters are searched from a moving "free cluster index";
//  - a refcount update that needs a new refcount block allocates it first,
//    then makes the caller undo its partial update and search again (QEMU's
//    -EAGAIN), since the block may sit where the caller meant to allocate;
//  - a refcount table that is too small is replaced by a new table plus
//    self-describing blocks placed past everything they must cover, and the
//    old table's clusters are freed (their stale bytes stay in the file).

/// QEMU's -EAGAIN: refcount metadata was allocated; restart the search.
struct AllocationRestart: Error {}

final class RefcountAllocator {
    let file: BlockFile
    let blocks: MetadataCache
    let clusterBits: UInt64
    let clusterSize: UInt64
    let width: RefcountWidth
    /// log2 of the entries in one refcount block.
    let refblockBits: UInt64
    var refblockSize: UInt64 { 1 << refblockBits }

    /// Refcount block offsets, as in the on-disk table.
    private(set) var table: [UInt64]
    private(set) var tableOffset: UInt64
    private var maxTableIndex: Int
    /// Where the next search for free clusters starts (QEMU's free_cluster_index).
    private(set) var freeClusterIndex: UInt64 = 0

    /// Called before the refcount table changes, where QEMU flushes its L2
    /// cache first (so that the file holds every L2 table by then).
    var flushDependencies: () throws -> Void = {}

    /// QEMU's QCOW_MAX_REFTABLE_SIZE, compared (as QEMU does) both with the
    /// number of refcount blocks and with the table's entry count.
    static let maxReftableSize: UInt64 = 8 << 20
    /// Host offsets must fit the 56-bit offset fields (QCOW_MAX_CLUSTER_OFFSET).
    static let maxClusterOffset: UInt64 = (1 << 56) - 1

    init(file: BlockFile, clusterBits: UInt32, width: RefcountWidth, tableOffset: UInt64, table: [UInt64]) {
        self.file = file
        self.clusterBits = UInt64(clusterBits)
        clusterSize = 1 << UInt64(clusterBits)
        self.width = width
        refblockBits = UInt64(clusterBits) + 3 - UInt64(width.order)
        blocks = MetadataCache(file: file, clusterSize: Int(clusterSize), capacityBytes: 8 << 20)
        self.table = table
        self.tableOffset = tableOffset
        maxTableIndex = RefcountTable(entries: table).lastUsedIndex
    }

    var tableClusters: UInt64 { UInt64(table.count) * 8 / clusterSize }

    // MARK: Reading refcounts

    func refcount(ofCluster index: UInt64) throws -> UInt64 {
        let tableIndex = index >> refblockBits
        guard tableIndex < UInt64(table.count) else { return 0 }
        let blockOffset = table[Int(tableIndex)] & Qcow2EntryMask.refcountTableOffset
        guard blockOffset != 0 else { return 0 }
        let block = try blocks.get(blockOffset)
        let entry = Int(index & (refblockSize - 1))
        return block.bytes.withUnsafeBytes { RefcountCoding.get($0, index: entry, width: width) }
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
                try updateRefcount(offset: offset, length: size, addend: 1, decrease: false)
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
                try updateRefcount(offset: offset, length: free << clusterBits, addend: 1, decrease: false)
                return free
            } catch is AllocationRestart {
                continue
            }
        }
    }

    func freeClusters(offset: UInt64, length: UInt64) throws {
        try updateRefcount(offset: offset, length: length, addend: 1, decrease: true)
    }

    // MARK: Refcount updates

    /// Adds `addend` to (or subtracts it from) the refcount of every cluster
    /// in the range; on any failure the clusters already updated are put back,
    /// and the error (possibly `AllocationRestart`) is rethrown.
    func updateRefcount(offset: UInt64, length: UInt64, addend: UInt64, decrease: Bool) throws {
        guard length > 0 else { return }
        let mask = ~(clusterSize - 1)
        let last = (offset + length - 1) & mask
        var clusterOffset = offset & mask
        var currentTableIndex: UInt64?
        var block: CachedCluster?
        do {
            while clusterOffset <= last {
                let clusterIndex = clusterOffset >> clusterBits
                let tableIndex = clusterIndex >> refblockBits
                if tableIndex != currentTableIndex {
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
                var value = current.bytes.withUnsafeBytes { RefcountCoding.get($0, index: entry, width: width) }
                if decrease {
                    guard value >= addend else { throw Qcow2Error.corruptMetadata("refcount of cluster \(clusterIndex) would drop below zero") }
                    value -= addend
                } else {
                    guard value <= width.maxValue - addend else {
                        throw Qcow2Error.corruptMetadata("refcount of cluster \(clusterIndex) would exceed \(width.maxValue)")
                    }
                    value += addend
                }
                if value == 0 && clusterIndex < freeClusterIndex { freeClusterIndex = clusterIndex }
                current.bytes.withUnsafeMutableBytes { RefcountCoding.set($0, index: entry, value: value, width: width) }
                clusterOffset += clusterSize
            }
        } catch {
            try? updateRefcount(offset: offset, length: clusterOffset - offset, addend: addend, decrease: !decrease)
            throw error
        }
    }

    private func inSameRefcountBlock(_ a: UInt64, _ b: UInt64) -> Bool {
        a >> (clusterBits + refblockBits) == b >> (clusterBits + refblockBits)
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
                    throw Qcow2Error.corruptMetadata("Refblock offset \(existing) unaligned (reftable index: \(tableIndex))")
                }
                return existing
            }
        }

        try flushDependencies()
        let newBlock = try allocateWithoutReference(clusterSize, limit: UInt64(Int64.max))
        guard newBlock != 0 else { throw Qcow2Error.corruptMetadata("Preventing invalid allocation of refcount block at offset 0") }

        if inSameRefcountBlock(newBlock, clusterIndex << clusterBits) {
            // The block describes itself.
            let block = try blocks.getEmpty(newBlock)
            let entry = Int((newBlock >> clusterBits) & (refblockSize - 1))
            block.bytes.withUnsafeMutableBytes { RefcountCoding.set($0, index: entry, value: 1, width: width) }
        } else {
            // Described by another block, which may itself need allocating.
            try updateRefcount(offset: newBlock, length: clusterSize, addend: 1, decrease: false)
            try blocks.flush()
            _ = try blocks.getEmpty(newBlock)
        }
        try blocks.flush()

        if tableIndex < UInt64(table.count) {
            table[Int(tableIndex)] = newBlock
            var entry = [UInt8](repeating: 0, count: 8)
            entry.setBE(newBlock, at: 0)
            try file.write(entry, at: tableOffset + tableIndex * 8)
            maxTableIndex = max(maxTableIndex, Int(tableIndex))
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
                    let done = block.bytes.withUnsafeMutableBytes { buffer -> Bool in
                        guard RefcountCoding.get(UnsafeRawBufferPointer(buffer), index: Int(j), width: width) == 0 else { return false }
                        RefcountCoding.set(buffer, index: Int(j), value: 1, width: width)
                        return true
                    }
                    guard done else { throw Qcow2Error.corruptMetadata("refcount area at \(start) is not free") }
                    j += 1
                }
                block.isDirty = true
            }
        }
        precondition(blockOffset == newTableOffset)
        try blocks.flush()
        try file.write(RefcountTable(entries: newTable).encode(), at: newTableOffset)

        let oldOffset = tableOffset
        let oldSize = UInt64(table.count)
        table = newTable
        tableOffset = newTableOffset
        maxTableIndex = RefcountTable(entries: table).lastUsedIndex
        try freeClusters(offset: oldOffset, length: oldSize * 8)
        return end
    }
}
