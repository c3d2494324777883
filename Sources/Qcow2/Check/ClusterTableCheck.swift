// Counting what an L1 table references: the table itself, its L2 tables and
// every data cluster they map, compressed data by the bytes it spans
// (check_refcounts_l1 / check_refcounts_l2). Entries are checked on the way;
// the active table also yields the allocation and fragmentation figures.

extension RefcountCheck {
    func checkL1Table(offset l1Offset: UInt64, size l1Size: Int, fragmentation: Bool,
                      repair: CheckRepair, active: Bool) throws {
        guard l1Size > 0 else { return }
        let l1Bytes = l1Size * 8
        try countReference(offset: l1Offset, size: UInt64(l1Bytes))

        // Past the end of the file the table reads as zeroes: only the part
        // inside the file is read and looked at.
        let raw: [UInt8]
        do {
            guard l1Offset <= UInt64(Int64.max) - UInt64(l1Bytes) else { throw CheckFailure(errno: CheckErrno.io) }
            let fileLength = try image.fileLength()
            let inFile = l1Offset >= fileLength ? 0 : Int(min(UInt64(l1Bytes), fileLength - l1Offset))
            raw = try image.read((inFile + 7) & ~7, at: l1Offset)
        } catch {
            report("ERROR: I/O error in check_refcounts_l1")
            result.checkErrors += 1
            throw error
        }
        try spendBudget(entries: raw.count / 8)
        var readAhead = TableReadAhead(file: image.file, clusterSize: geometry.clusterSize, count: raw.count / 8) {
            raw.be(UInt64.self, at: $0 * 8) & CheckMask.l1Offset
        }
        for i in 0..<(raw.count / 8) {
            let entry = raw.be(UInt64.self, at: i * 8)
            if entry == 0 { continue }
            readAhead.advance(to: i)
            if entry & CheckMask.l1Reserved != 0 {
                report("ERROR found L1 entry with reserved bits set: \(hexBare(entry))")
                result.corruptions += 1
            }
            let l2Offset = entry & CheckMask.l1Offset
            try countReference(offset: l2Offset, size: geometry.clusterSize)
            if geometry.offsetIntoCluster(l2Offset) != 0 {
                report("ERROR l2_offset=\(hexBare(l2Offset)): Table is not cluster aligned; L1 entry corrupted")
                result.corruptions += 1
            }
            try checkL2Table(offset: l2Offset, fragmentation: fragmentation, repair: repair, active: active)
        }
    }

    func checkL2Table(offset l2Offset: UInt64, fragmentation: Bool, repair: CheckRepair, active: Bool) throws {
        // As for L1 tables, only the part inside the file is read: the rest
        // is zeroes, unallocated entries.
        let tableBytes = geometry.l2Size * geometry.l2EntrySize
        var table: [UInt8]
        do {
            guard l2Offset <= UInt64(Int64.max) - UInt64(tableBytes) else { throw CheckFailure(errno: CheckErrno.io) }
            let fileLength = try image.fileLength()
            let inFile = l2Offset >= fileLength ? 0 : Int(min(UInt64(tableBytes), fileLength - l2Offset))
            let entrySize = geometry.l2EntrySize
            table = try image.read((inFile + entrySize - 1) / entrySize * entrySize, at: l2Offset)
        } catch {
            report("ERROR: I/O error in check_refcounts_l2")
            result.checkErrors += 1
            throw error
        }
        let entries = table.count / geometry.l2EntrySize
        try spendBudget(entries: max(1, entries))
        try table.withUnsafeBytes { bytes in
            try checkL2Entries(bytes, entries: entries, l2Offset: l2Offset, fragmentation: fragmentation,
                               repair: repair, active: active)
        }
    }

    private func checkL2Entries(_ table: UnsafeRawBufferPointer, entries: Int, l2Offset: UInt64,
                                fragmentation: Bool, repair: CheckRepair, active: Bool) throws {
        let extended = geometry.extendedL2
        let entrySize = geometry.l2EntrySize
        let clusterBits = geometry.clusterBits
        let clusterMask = geometry.clusterSize - 1
        var nextContiguousOffset: UInt64 = 0
        // The file's length, asked again after any repair writes.
        var fileLength = try image.fileLength()

        for i in 0..<entries {
            let position = i * entrySize
            var entry = UInt64(bigEndian: table.loadUnaligned(fromByteOffset: position, as: UInt64.self))
            let bitmap = extended ? UInt64(bigEndian: table.loadUnaligned(fromByteOffset: position + 8, as: UInt64.self)) : 0
            if entry == 0 && bitmap == 0 { continue }   // unallocated, nothing to check

            // The usual entry, a data cluster: no reserved bits, aligned,
            // inside the file and the counts, its count below the maximum. Counted here as
            // countReference would count it; anything else goes the long way.
            if !extended, entry & (CheckMask.compressed | CheckMask.zero | CheckMask.l2StandardReserved) == 0 {
                let offset = entry & CheckMask.l2Offset
                let cluster = Int64(offset >> clusterBits)
                if offset != 0, offset & clusterMask == 0, offset < fileLength, cluster < references.count,
                   references.increment(cluster) {
                    if fragmentation {
                        result.fragmentation.allocatedClusters += 1
                        if nextContiguousOffset != 0 && offset != nextContiguousOffset {
                            result.fragmentation.fragmentedClusters += 1
                        }
                        nextContiguousOffset = offset &+ geometry.clusterSize
                    }
                    continue
                }
            }
            let type = CheckClusterType(entry: entry, extendedL2: extended)

            if type != .compressed && entry & CheckMask.l2StandardReserved != 0 {
                report("ERROR found l2 entry with reserved bits set: \(hexBare(entry))")
                result.corruptions += 1
            }

            switch type {
            case .compressed:
                if entry & CheckMask.copied != 0 {
                    report("ERROR: coffset=0x\(hexBare(entry & geometry.clusterOffsetMask)): "
                                + "copied flag must never be set for compressed clusters")
                    entry &= ~CheckMask.copied
                    result.corruptions += 1
                }
                if bitmap != 0 {
                    report("ERROR compressed cluster \(i) with non-zero subcluster allocation bitmap, "
                                + "entry=0x\(hexBare(entry))")
                    result.corruptions += 1
                    break
                }
                // The compressed bytes: from the host offset to the end of
                // the last 512-byte sector the descriptor names.
                let hostOffset = entry & geometry.clusterOffsetMask
                let sectors = ((entry >> geometry.csizeShift) & geometry.csizeMask) + 1
                try countReference(offset: hostOffset, size: sectors * 512 - (hostOffset & 511))
                if fragmentation {
                    // Compressed clusters count as fragmented: neighbours
                    // share sectors, which are read again.
                    result.fragmentation.allocatedClusters += 1
                    result.fragmentation.compressedClusters += 1
                    result.fragmentation.fragmentedClusters += 1
                }

            case .zeroAllocated, .normal:
                let offset = entry & CheckMask.l2Offset
                if (bitmap >> 32) & bitmap != 0 {
                    result.corruptions += 1
                    report("ERROR offset=\(hexBare(offset)): Allocated cluster has corrupted subcluster allocation bitmap")
                }
                if geometry.offsetIntoCluster(offset) != 0 {
                    result.corruptions += 1
                    let containsData = extended ? bitmap & CheckMask.bitmapAllAllocated != 0 : entry & CheckMask.zero == 0
                    if containsData {
                        report("ERROR offset=\(hexBare(offset)): Data cluster is not properly aligned; L2 entry corrupted.")
                    } else {
                        let fixing = repair.contains(.errors)
                        report("\(fixing ? "Repairing" : "ERROR") offset=\(hexBare(offset)): "
                                    + "Preallocated cluster is not properly aligned; L2 entry corrupted.")
                        if fixing {
                            // Fixed: the entry reads as zeroes and no longer
                            // references the cluster. A failed write is
                            // counted, and the entry still is.
                            let fixed = try zeroEntry(i, bitmap: bitmap, at: l2Offset, active: active)
                            fileLength = try image.fileLength()
                            if fixed { continue }
                        }
                    }
                }
                if fragmentation {
                    result.fragmentation.allocatedClusters += 1
                    if nextContiguousOffset != 0 && offset != nextContiguousOffset {
                        result.fragmentation.fragmentedClusters += 1
                    }
                    nextContiguousOffset = offset &+ geometry.clusterSize
                }
                try countReference(offset: offset, size: geometry.clusterSize)

            case .zeroPlain:
                break

            case .unallocated:
                if bitmap & CheckMask.bitmapAllAllocated != 0 {
                    result.corruptions += 1
                    report("ERROR: Unallocated cluster has non-zero subcluster allocation map")
                }
            }
        }
    }

    /// Makes entry `index` read as zeroes without a host cluster
    /// (fix_l2_entry_by_zero) and writes it. Returns whether it was fixed;
    /// throws when the write would overlap other metadata.
    private func zeroEntry(_ index: Int, bitmap: UInt64, at l2Offset: UInt64, active: Bool) throws -> Bool {
        let entrySize = geometry.l2EntrySize
        let position = index * entrySize
        var fixed = [UInt8](repeating: 0, count: entrySize)
        if geometry.extendedL2 {
            fixed.setBE((bitmap | bitmap << 32) & CheckMask.bitmapAllZeroes, at: 8)
        } else {
            fixed.setBE(CheckMask.zero, at: 0)
        }
        let entryOffset = l2Offset &+ UInt64(position)
        do {
            try image.checkBeforeWriting(offset: entryOffset, size: UInt64(entrySize),
                                         ignoring: active ? [.activeL2] : [], diagnostics: diagnostics)
        } catch {
            report("ERROR: Overlap check failed")
            result.checkErrors += 1
            throw error
        }
        do {
            try image.write(fixed, at: entryOffset)
            try image.flush()
        } catch let failure as CheckFailure {
            report("ERROR: Failed to overwrite L2 table entry: \(failure)")
            result.checkErrors += 1
            return false
        }
        result.corruptions -= 1
        result.corruptionsFixed += 1
        return true
    }
}

/// How much table walking one count of references may do, in table entries
/// looked at. QEMU walks what the tables say, however often they say it: a
/// hostile image can make that years of work (65536 snapshots, each an L1
/// table of 4 Mi entries naming the same L2 tables). A valid image needs a
/// small multiple of its file's size in entries: its L1 tables are distinct
/// clusters of the file, and its L2 tables are walked once per L1 table
/// sharing them; the bound allows hundreds of snapshots sharing every table
/// of a sparse image.
struct WalkBudget {
    var entries: Int64

    init(fileLength: UInt64) {
        entries = (1 << 27) + 256 * Int64(clamping: fileLength / 8)
    }
}

extension RefcountCheck {
    /// Spends from the walk budget; an image that exhausts it references
    /// its metadata far more often than any valid image, and its check fails
    /// (EFBIG) rather than run for days.
    func spendBudget(entries: Int) throws {
        budget.entries -= Int64(entries)
        if budget.entries < 0 {
            report("ERROR: the image's tables are walked more often than any valid image needs; check aborted")
            result.checkErrors += 1
            throw CheckFailure(errno: CheckErrno.tooBig)
        }
    }
}
