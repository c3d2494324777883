// Replacing a broken refcount structure with one built from the references
// counted (rebuild_refcount_structure, rebuild_refcounts_write_refblocks,
// alloc_clusters_imrt). The counts are already laid out as refcount blocks:
// blocks for every stretch of clusters in use are placed in free clusters
// and written straight from the counts, then a refcount table is placed
// (which may take clusters needing blocks of their own: repeated until the
// table stops growing). The old structure is left behind as leaks, which
// the comparison that follows frees. Blocks and table are written and
// flushed before the header points to the new table. `check -r all` and
// the repair of a dirty image on open both come here.

struct RebuildFailure: Error {
    var message: String
    var errno: Int32
}

extension RefcountCheck {
    /// Rebuilds, counts again and frees what the old structure leaves
    /// behind; the result then reports as fixed what the rebuild fixed.
    /// Returns the highest cluster in use.
    func rebuildAndRecount(highestCluster: Int64) throws -> Int64 {
        let before = result
        matchingBlocks = MatchingBlocks()
        report("Rebuilding refcount structure")
        do {
            try rebuildRefcountStructure()
        } catch let failure as RebuildFailure {
            reportError("\(failure.message): \(errnoDescription(failure.errno))")
            throw CheckFailure(errno: failure.errno)
        }
        result.corruptions = 0
        result.leaks = 0

        // The old table's references are gone: count everything again.
        rebuild = false
        references.reset()
        try calculate(repair: [])

        var highest = highestCluster
        var freshLeaks = 0
        if repair.contains(.leaks) {
            // Only leaks the rebuild itself made remain; free them. What
            // this comparison finds and fixes is not reported as such.
            let saved = result
            result = CheckResult()
            highest = try compare(repair: .leaks)
            if rebuild {
                report("ERROR rebuilt refcount structure is still broken")
            }
            freshLeaks = result.leaks
            result = saved
        }
        if result.corruptions < before.corruptions {
            result.corruptionsFixed += before.corruptions - result.corruptions
        }
        if result.leaks < before.leaks {
            result.leaksFixed += before.leaks - result.leaks
        }
        result.leaks += freshLeaks
        return highest
    }

    private func rebuildRefcountStructure() throws {
        try image.emptyRefcountBlockCache()
        let placement = RefcountStructurePlacement(clusterBits: geometry.clusterBits,
                                                   refblockEntries: geometry.refblockSize) { [image, geometry, diagnostics] block, offset in
            do {
                try image.checkBeforeWriting(offset: offset, size: geometry.clusterSize, diagnostics: diagnostics)
                try image.write(Array(block), at: offset)
            } catch let failure as CheckFailure {
                throw RebuildFailure(message: "ERROR writing refblock", errno: failure.errno)
            }
        }
        let table: [UInt64], tableOffset: UInt64, tableClusters: UInt64
        do {
            (table, tableOffset, tableClusters) = try placement.place(references)
        } catch {
            result.checkErrors += 1
            throw error
        }

        let tableBytes = RefcountTable(entries: table).encode()
        do {
            try image.checkBeforeWriting(offset: tableOffset, size: UInt64(tableBytes.count), diagnostics: diagnostics)
            try image.write(tableBytes, at: tableOffset)
            // Blocks and table must be on disk before the header names them.
            try image.flush()
        } catch let failure as CheckFailure {
            throw RebuildFailure(message: "ERROR writing reftable", errno: failure.errno)
        }
        let pointer = HeaderFieldUpdate.refcountTableLocation(offset: tableOffset, clusters: UInt32(truncatingIfNeeded: tableClusters))
        do {
            try image.write(pointer.bytes, at: pointer.offset)
            try image.flush()
        } catch let failure as CheckFailure {
            throw RebuildFailure(message: "ERROR setting reftable", errno: failure.errno)
        }
        image.allocator.adoptTable(offset: tableOffset, entries: table)
    }
}

/// Places a new refcount structure for the counts (counting its own
/// clusters there too) and writes its refcount blocks; the caller writes
/// the table.
struct RefcountStructurePlacement {
    let clusterBits: UInt64
    /// Refcounts per refcount block.
    let refblockEntries: UInt64
    /// Writes one refcount block (cluster-sized) at a host offset.
    var writeBlock: (_ block: UnsafeRawBufferPointer, _ offset: UInt64) throws -> Void

    /// The counts could not grow for a block or for the table.
    private func allocationFailed(_ error: Error, forTable: Bool) -> Error {
        guard let failure = error as? CheckFailure else { return error }
        return RebuildFailure(message: forTable ? "ERROR allocating reftable" : "ERROR allocating refblock",
                              errno: failure.errno)
    }

    /// rebuild_refcount_structure up to writing the table: the table's
    /// entries, where it goes and its length in clusters.
    func place(_ counts: ReferenceCounts) throws -> (table: [UInt64], offset: UInt64, clusters: UInt64) {
        var table: [UInt64] = []
        _ = try writeBlocks(counts, from: 0, to: UInt64(counts.count), table: &table)
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
                throw allocationFailed(error, forTable: true)
            }
            offset = start << clusterBits
            // The table's own clusters need their refcount blocks written.
            grown = try writeBlocks(counts, from: start, to: start + clusters, table: &table)
        }
        return (table, offset, clusters)
    }

    /// rebuild_refcounts_write_refblocks: for each refcount block's worth of
    /// clusters in [first, end) with any in use, a block (placed in a free
    /// cluster unless the table has one) holding that slice of `counts`.
    /// Returns whether `table` had to grow.
    private func writeBlocks(_ counts: ReferenceCounts, from first: UInt64, to initialEnd: UInt64,
                             table: inout [UInt64]) throws -> Bool {
        let entriesPerTableCluster = (UInt64(1) << clusterBits) / 8
        var end = initialEnd
        var firstFree: UInt64 = 0
        var grown = false
        var cluster = first
        while cluster < end {
            guard counts[Int64(cluster)] != 0 else {
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
                    throw allocationFailed(error, forTable: false)
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
            try writeBlock(counts.refcountBlock(Int64(blockIndex)), blockOffset)
            cluster = blockStart + refblockEntries
        }
        return grown
    }
}
