// Replacing a broken refcount structure with one built from the references
// counted (rebuild_refcount_structure). The counts are already laid out as
// refcount blocks; placing those blocks and a new refcount table in free
// clusters (which changes the counts again, until the table stops growing)
// is RefcountStructurePlacement's, shared with the write path's repair. The
// old structure is left behind as leaks, which the comparison that follows
// frees. Blocks and table are written and flushed before the header points
// to the new table.

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
        var placement = RefcountStructurePlacement(clusterBits: geometry.clusterBits,
                                                   refblockEntries: geometry.refblockSize) { [image, geometry, diagnostics] block, offset in
            do {
                try image.checkBeforeWriting(offset: offset, size: geometry.clusterSize, diagnostics: diagnostics)
                try image.write(Array(block), at: offset)
            } catch let failure as CheckFailure {
                throw RebuildFailure(message: "ERROR writing refblock", errno: failure.errno)
            }
        }
        placement.allocationFailed = { error, forTable in
            guard let failure = error as? CheckFailure else { return error }
            return RebuildFailure(message: forTable ? "ERROR allocating reftable" : "ERROR allocating refblock",
                                  errno: failure.errno)
        }
        let table: [UInt64], tableOffset: UInt64, tableClusters: UInt64
        do {
            (table, tableOffset, tableClusters) = try placement.place(&references)
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
        image.installRefcountTable(table, at: tableOffset)
    }
}

extension Qcow2Checker {
    /// Switches to a refcount table just written and named in the header.
    func installRefcountTable(_ table: [UInt64], at offset: UInt64) {
        refcountTable = table
        refcountTableOffset = offset
    }
}
