// Rebuilding the refcount structure from the references counted (QEMU's
// rebuild_refcount_structure, rebuild_refcounts_write_refblocks and
// alloc_clusters_imrt): refcount blocks for every stretch of clusters in
// use are placed in free clusters and written straight from the counts,
// then a refcount table is placed (which may take clusters needing blocks of
// their own: repeated until the table stops growing), written, and named by
// the header. The old structure is left unreferenced; the repair frees it as
// leaked. The placement (RefcountStructurePlacement) is shared by the write
// path's repair of dirty images and by `qcowkit check -r all`; each writes
// the table and the header its own way.

/// In-memory refcounts laid out as refcount blocks (QEMU's in-memory refcount
/// table): refcount block `i` of an image whose refcounts matched would be
/// the i-th cluster-sized slice.
protocol InMemoryRefcounts {
    /// Clusters covered (QEMU's nb_clusters).
    var clusterCount: UInt64 { get }
    func refcount(ofCluster cluster: UInt64) -> UInt64
    mutating func setRefcount(ofCluster cluster: UInt64, _ value: UInt64)
    /// realloc_refcount_array: covers at least `count` clusters, new ones zero.
    mutating func grow(toClusters count: UInt64) throws
    /// The cluster-sized slice that is refcount block `index`.
    func withRefcountBlock<R>(_ index: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension InMemoryRefcounts {
    /// alloc_clusters_imrt: the first run of `clusters` free clusters from
    /// `firstFree` on (growing past the end if needed), marked used; moves
    /// `firstFree` to the first free cluster seen. Returns the run's first cluster.
    mutating func allocate(_ clusters: UInt64, firstFree: inout UInt64) throws -> UInt64 {
        var cluster = firstFree
        var contiguous: UInt64 = 0
        var firstGap = true
        while cluster < clusterCount && contiguous < clusters {
            if refcount(ofCluster: cluster) == 0 {
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
        if contiguous < clusters {
            // Clusters past the old end are free; `cluster` may already be past it.
            try grow(toClusters: max(clusterCount, cluster + clusters - contiguous))
            cluster += clusters - contiguous
        }
        let first = cluster - clusters
        for i in first..<cluster { setRefcount(ofCluster: i, 1) }
        return first
    }
}

/// Places a new refcount structure for `counts` (counting its own clusters
/// there too) and writes its refcount blocks; the caller writes the table.
struct RefcountStructurePlacement {
    let clusterBits: UInt64
    /// Refcounts per refcount block.
    let refblockEntries: UInt64
    /// Writes one refcount block (cluster-sized) at a host offset.
    var writeBlock: (_ block: UnsafeRawBufferPointer, _ offset: UInt64) throws -> Void
    /// The error to throw when the counts cannot grow for a block or the table.
    var allocationFailed: (_ error: Error, _ forTable: Bool) -> Error = { error, _ in error }

    /// rebuild_refcount_structure up to writing the table: the table's
    /// entries, where it goes and its length in clusters.
    func place<Counts: InMemoryRefcounts>(_ counts: inout Counts) throws
        -> (table: [UInt64], offset: UInt64, clusters: UInt64)
    {
        var table: [UInt64] = []
        _ = try writeBlocks(&counts, from: 0, to: counts.clusterCount, table: &table)
        let clusterSize: UInt64 = 1 << clusterBits
        var offset: UInt64 = 0
        var clusters: UInt64 = 0
        var grown = true
        while grown {
            clusters = divideRoundingUp(UInt64(table.count) * 8, clusterSize)
            var firstFree: UInt64 = 0
            let start: UInt64
            do {
                start = try counts.allocate(clusters, firstFree: &firstFree)
            } catch {
                throw allocationFailed(error, true)
            }
            offset = start << clusterBits
            // The table's own clusters need their refcount blocks written.
            grown = try writeBlocks(&counts, from: start, to: start + clusters, table: &table)
        }
        return (table, offset, clusters)
    }

    /// rebuild_refcounts_write_refblocks: for each refcount block's worth of
    /// clusters in [first, end) with any in use, a block (placed in a free
    /// cluster unless the table has one) holding that slice of `counts`.
    /// Returns whether `table` had to grow.
    private func writeBlocks<Counts: InMemoryRefcounts>(_ counts: inout Counts, from first: UInt64, to initialEnd: UInt64,
                                                        table: inout [UInt64]) throws -> Bool {
        let entriesPerTableCluster = (UInt64(1) << clusterBits) / 8
        var end = initialEnd
        var firstFree: UInt64 = 0
        var grown = false
        var cluster = first
        while cluster < end {
            guard counts.refcount(ofCluster: cluster) != 0 else {
                cluster += 1
                continue
            }
            let blockIndex = cluster / refblockEntries
            let blockStart = blockIndex * refblockEntries
            let blockOffset: UInt64
            if blockIndex < UInt64(table.count) && table[Int(blockIndex)] != 0 {
                blockOffset = table[Int(blockIndex)]
            } else {
                // Never in a block already written.
                firstFree = max(firstFree, blockStart)
                let blockCluster: UInt64
                do {
                    blockCluster = try counts.allocate(1, firstFree: &firstFree)
                } catch {
                    throw allocationFailed(error, false)
                }
                blockOffset = blockCluster << clusterBits
                // The block holding this block's own refcount must be written too.
                if blockCluster >= end { end = blockCluster + 1 }
                if UInt64(table.count) <= blockIndex {
                    let entries = divideRoundingUp(blockIndex + 1, entriesPerTableCluster) * entriesPerTableCluster
                    table += [UInt64](repeating: 0, count: Int(entries) - table.count)
                    grown = true
                }
                table[Int(blockIndex)] = blockOffset
            }
            try counts.withRefcountBlock(blockIndex) { try writeBlock($0, blockOffset) }
            cluster = blockStart + refblockEntries
        }
        return grown
    }
}

extension ComputedRefcounts: InMemoryRefcounts {
    var clusterCount: UInt64 { count }
    func refcount(ofCluster cluster: UInt64) -> UInt64 { get(cluster) }
    mutating func setRefcount(ofCluster cluster: UInt64, _ value: UInt64) { set(cluster, value) }
    mutating func grow(toClusters count: UInt64) { grow(to: count) }
    func withRefcountBlock<R>(_ index: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = Int(index * clusterSize)
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<(start + Int(clusterSize))])) }
    }
}

extension Qcow2Writer {
    // MARK: Rebuilding (rebuild_refcount_structure)

    /// Writes a new refcount structure from `counts`: refcount blocks for
    /// every stretch of clusters in use, then a refcount table, all placed in
    /// free clusters (and counted), then the header names the table. The old
    /// structure is left for the caller to free as leaked.
    func rebuildRefcountStructureLocked(_ counts: inout ComputedRefcounts) throws {
        try allocator.blocks.flush()
        allocator.blocks.removeAll()
        let placement = RefcountStructurePlacement(clusterBits: clusterBits, refblockEntries: allocator.refblockSize) {
            [self] block, offset in
            try checkOverlapLocked(offset: offset, length: clusterSize)
            try file.write(block, at: offset)
        }
        let (reftable, tableOffset, tableClusters) = try placement.place(&counts)

        let tableBytes = RefcountTable(entries: reftable).encode()
        try checkOverlapLocked(offset: tableOffset, length: UInt64(tableBytes.count))
        try file.write(tableBytes, at: tableOffset)
        let location = HeaderFieldUpdate.refcountTableLocation(offset: tableOffset, clusters: UInt32(tableClusters))
        try file.write(location.bytes, at: location.offset)
        try file.flush()
        header.refcountTableOffset = tableOffset
        header.refcountTableClusters = UInt32(tableClusters)
        allocator.adoptTable(offset: tableOffset, entries: reftable)
    }
}
