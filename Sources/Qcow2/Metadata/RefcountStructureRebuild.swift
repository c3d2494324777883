// Rebuilding the refcount structure from the references counted (QEMU's
// rebuild_refcount_structure, rebuild_refcounts_write_refblocks and
// alloc_clusters_imrt): refcount blocks for every stretch of clusters in
// use are placed in free clusters and written straight from the counts,
// then a refcount table is placed (which may take clusters needing blocks of
// their own: repeated until the table stops growing), written, and named by
// the header. The old structure is left unreferenced; the repair frees it as
// leaked.

extension Qcow2Writer {
    // MARK: Rebuilding (rebuild_refcount_structure)

    /// Writes a new refcount structure from `counts`: refcount blocks for
    /// every stretch of clusters in use, then a refcount table, all placed in
    /// free clusters (and counted), then the header names the table. The old
    /// structure is left for the caller to free as leaked.
    func rebuildRefcountStructureLocked(_ counts: inout ComputedRefcounts) throws {
        try allocator.blocks.flush()
        allocator.blocks.removeAll()
        var reftable: [UInt64] = []
        var grown = try writeRefcountBlocksLocked(&counts, from: 0, to: counts.count, reftable: &reftable)
        precondition(grown, "a rebuilt refcount table starts empty")
        var tableOffset: UInt64 = 0
        var tableClusters: UInt64 = 0
        repeat {
            tableClusters = sizeToClusters(UInt64(reftable.count) * 8)
            var firstFree: UInt64 = 0
            tableOffset = allocateInMemory(&counts, clusters: tableClusters, firstFree: &firstFree)
            let start = tableOffset >> clusterBits
            grown = try writeRefcountBlocksLocked(&counts, from: start, to: start + tableClusters, reftable: &reftable)
        } while grown

        let tableBytes = RefcountTable(entries: reftable).encode()
        try checkOverlapLocked(offset: tableOffset, length: UInt64(tableBytes.count))
        try file.write(tableBytes, at: tableOffset)
        var location = [UInt8](repeating: 0, count: 12)
        location.setBE(tableOffset, at: 0)
        location.setBE(UInt32(tableClusters), at: 8)
        try file.write(location, at: 48)
        try file.flush()
        header.refcountTableOffset = tableOffset
        header.refcountTableClusters = UInt32(tableClusters)
        allocator.adoptTable(offset: tableOffset, entries: reftable)
    }

    /// rebuild_refcounts_write_refblocks: for each refcount block's worth of
    /// clusters in [first, end) with any in use, a block (allocated in
    /// `counts` unless the table has one) holding that slice of `counts`.
    /// Returns whether `reftable` had to grow.
    func writeRefcountBlocksLocked(_ counts: inout ComputedRefcounts, from first: UInt64, to end: UInt64,
                                           reftable: inout [UInt64]) throws -> Bool {
        let entriesPerBlock = allocator.refblockSize
        var end = end
        var firstFree: UInt64 = 0
        var grown = false
        var cluster = first
        while cluster < end {
            defer { cluster += 1 }
            guard counts.get(cluster) != 0 else { continue }
            let blockIndex = cluster / entriesPerBlock
            let blockStart = blockIndex * entriesPerBlock
            var blockOffset: UInt64
            if UInt64(reftable.count) > blockIndex && reftable[Int(blockIndex)] != 0 {
                blockOffset = reftable[Int(blockIndex)]
            } else {
                // Never in a block already written.
                firstFree = max(firstFree, blockStart)
                blockOffset = allocateInMemory(&counts, clusters: 1, firstFree: &firstFree)
                let blockCluster = blockOffset >> clusterBits
                // The block holding this block's refcount must be written too.
                if blockCluster >= end { end = blockCluster + 1 }
                if UInt64(reftable.count) <= blockIndex {
                    let entries = roundUp((blockIndex + 1) * 8, clusterSize) / 8
                    reftable += [UInt64](repeating: 0, count: Int(entries) - reftable.count)
                    grown = true
                }
                reftable[Int(blockIndex)] = blockOffset
            }
            try checkOverlapLocked(offset: blockOffset, length: clusterSize)
            let sliceStart = Int(blockIndex * clusterSize)
            try counts.bytes.withUnsafeBytes {
                try file.write(UnsafeRawBufferPointer(rebasing: $0[sliceStart..<(sliceStart + Int(clusterSize))]), at: blockOffset)
            }
            // This block is done.
            cluster = blockStart + entriesPerBlock - 1
            blockOffset = 0
        }
        return grown
    }

    /// alloc_clusters_imrt: the first run of `clusters` free clusters from
    /// `firstFree` on (growing `counts` past the end if needed), marked used.
    func allocateInMemory(_ counts: inout ComputedRefcounts, clusters: UInt64, firstFree: inout UInt64) -> UInt64 {
        var cluster = firstFree
        var contiguous: UInt64 = 0
        var firstGap = true
        while cluster < counts.count && contiguous < clusters {
            if counts.get(cluster) == 0 {
                contiguous += 1
                if firstGap {
                    firstFree = cluster
                    firstGap = false
                }
            } else {
                contiguous = 0
            }
            cluster += 1
        }
        if contiguous < clusters { counts.grow(to: cluster + clusters - contiguous) }
        cluster -= contiguous
        for i in 0..<clusters { counts.set(cluster + i, 1) }
        return cluster << clusterBits
    }

}
