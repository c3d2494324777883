// Replacing a broken refcount structure with one built from the references
// counted (rebuild_refcount_structure). The counts are already laid out as
// refcount blocks; what remains is to place those blocks and a new refcount
// table in free clusters, which changes the counts again, until the table
// stops growing. The old structure is left behind as leaks, which the
// comparison that follows frees. Blocks and table are written and flushed
// before the header points to the new table.

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
        var table: [UInt64] = []
        do {
            _ = try writeRefcountBlocks(from: 0, to: references.count, table: &table)
        } catch {
            result.checkErrors += 1
            throw error
        }

        var tableOffset: UInt64 = 0
        var tableClusters: UInt64 = 0
        var grown = true
        while grown {
            tableClusters = geometry.clusters(forBytes: UInt64(table.count) * 8)
            var firstFree: Int64 = 0
            let start: Int64
            do {
                start = try references.allocate(Int64(tableClusters), firstFree: &firstFree)
            } catch let failure as CheckFailure {
                result.checkErrors += 1
                throw RebuildFailure(message: "ERROR allocating reftable", errno: failure.errno)
            }
            tableOffset = UInt64(start) << geometry.clusterBits
            // The table's own clusters need their refcount blocks updated.
            do {
                grown = try writeRefcountBlocks(from: start, to: start + Int64(tableClusters), table: &table)
            } catch {
                result.checkErrors += 1
                throw error
            }
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
        var pointer = [UInt8](repeating: 0, count: 12)
        pointer.setBE(tableOffset, at: 0)
        pointer.setBE(UInt32(truncatingIfNeeded: tableClusters), at: 8)
        do {
            try image.write(pointer, at: 48)
            try image.flush()
        } catch let failure as CheckFailure {
            throw RebuildFailure(message: "ERROR setting reftable", errno: failure.errno)
        }
        image.installRefcountTable(table, at: tableOffset)
    }

    /// Writes the refcount block of every cluster in [first, end) that is
    /// in use, placing blocks the table does not have yet in free clusters
    /// of their own range or after it (rebuild_refcounts_write_refblocks).
    /// Returns whether the table had to grow.
    private func writeRefcountBlocks(from first: Int64, to initialEnd: Int64, table: inout [UInt64]) throws -> Bool {
        let blockBits = geometry.refblockBits
        let blockSize = Int64(geometry.refblockSize)
        let entriesPerTableCluster = Int(geometry.clusterSize / 8)
        var end = initialEnd
        var firstFree: Int64 = 0
        var grown = false
        var cluster = first
        while cluster < end {
            if references[cluster] == 0 {
                cluster += 1
                continue
            }
            let blockIndex = cluster >> Int64(blockBits)
            let blockStart = blockIndex << Int64(blockBits)
            let blockOffset: UInt64
            if blockIndex < Int64(table.count) && table[Int(blockIndex)] != 0 {
                blockOffset = table[Int(blockIndex)]
            } else {
                firstFree = max(firstFree, blockStart)
                let blockCluster: Int64
                do {
                    blockCluster = try references.allocate(1, firstFree: &firstFree)
                } catch let failure as CheckFailure {
                    throw RebuildFailure(message: "ERROR allocating refblock", errno: failure.errno)
                }
                blockOffset = UInt64(blockCluster) << geometry.clusterBits
                // The block holding this block's own refcount must be written too.
                if blockCluster >= end { end = blockCluster + 1 }
                if Int64(table.count) <= blockIndex {
                    let needed = Int(blockIndex) + 1
                    let rounded = (needed + entriesPerTableCluster - 1) / entriesPerTableCluster * entriesPerTableCluster
                    table += [UInt64](repeating: 0, count: rounded - table.count)
                    grown = true
                }
                table[Int(blockIndex)] = blockOffset
            }
            do {
                try image.checkBeforeWriting(offset: blockOffset, size: geometry.clusterSize, diagnostics: diagnostics)
                try image.write(Array(references.refcountBlock(blockIndex)), at: blockOffset)
            } catch let failure as CheckFailure {
                throw RebuildFailure(message: "ERROR writing refblock", errno: failure.errno)
            }
            cluster = blockStart + blockSize
        }
        return grown
    }
}

extension Qcow2Checker {
    /// Switches to a refcount table just written and named in the header.
    func installRefcountTable(_ table: [UInt64], at offset: UInt64) {
        refcountTable = table
        refcountTableOffset = offset
    }
}
