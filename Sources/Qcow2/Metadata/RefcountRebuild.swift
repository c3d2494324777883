// Refcount repair for an image opened dirty (lazy refcounts after a crash):
// what QEMU's open does with qcow2_check_refcounts(BDRV_FIX_ERRORS |
// BDRV_FIX_LEAKS), step for step, so that the repaired file is QEMU's:
//  1. the refcounts the metadata implies are counted into an in-memory
//     refcount table (QEMU's IMRT): header, active L1 and L2 tables and the
//     clusters they reference, the snapshots' tables, the snapshot table,
//     the refcount table and blocks;
//  2. they are compared with the refcounts on disk; if a referenced cluster
//     has refcount 0 on disk (or the refcount blocks are broken) the whole
//     refcount structure is rebuilt from the in-memory table, placed in
//     free space, and the old structure freed as leaked;
//  3. otherwise each wrong refcount is corrected in place (freed clusters
//     are discarded in the file);
//  4. the COPIED flags of the active L1 and L2 entries are set to match.
// Named RefcountRebuild so that `qcowkit check -r` can share it: the
// counting and rebuilding here are QEMU's check repair, not specific to
// opening.

/// The refcounts the metadata implies (QEMU's in-memory refcount table): one
/// long run of refcount entries in the image's width, a whole number of
/// clusters long so that slices can be written out as refcount blocks.
struct ComputedRefcounts {
    let width: RefcountWidth
    let clusterSize: UInt64
    /// Clusters covered (QEMU's nb_clusters).
    private(set) var count: UInt64
    private(set) var bytes: [UInt8]

    init(width: RefcountWidth, clusterSize: UInt64, count: UInt64) {
        self.width = width
        self.clusterSize = clusterSize
        self.count = 0
        bytes = []
        grow(to: count)
    }

    /// realloc_refcount_array: covers at least `newCount` clusters.
    mutating func grow(to newCount: UInt64) {
        let needed = Int(divideRoundingUp(width.byteCount(entries: newCount), clusterSize) * clusterSize)
        if needed > bytes.count { bytes += [UInt8](repeating: 0, count: needed - bytes.count) }
        count = newCount
    }

    func get(_ index: UInt64) -> UInt64 {
        bytes.withUnsafeBytes { RefcountCoding.get($0, index: Int(index), width: width) }
    }

    mutating func set(_ index: UInt64, _ value: UInt64) {
        bytes.withUnsafeMutableBytes { RefcountCoding.set($0, index: Int(index), value: value, width: width) }
    }

    mutating func clear() {
        for i in bytes.indices { bytes[i] = 0 }
    }
}

/// What the check found (QEMU's BdrvCheckResult, the parts that matter here).
struct RefcountCheckResult {
    var corruptions = 0
    var leaks = 0
    var checkErrors = 0
    /// The refcount structure itself must be rebuilt.
    var rebuild = false
}

extension Qcow2Writer {
    /// qcow2_check_refcounts with errors and leaks fixed, then
    /// check_oflag_copied. Returns whether the image is consistent now.
    func repairRefcountsLocked() throws -> Bool {
        // The caches are clean and empty here: tables are read from disk.
        let clusters = sizeToClusters(roundUp(try file.size(), 512))
        var counts = ComputedRefcounts(width: allocator.width, clusterSize: clusterSize, count: clusters)
        var result = RefcountCheckResult()
        try countReferencesLocked(&counts, &result, fix: true)
        let beforeCompare = result
        compareRefcountsLocked(counts, &result, fixLeaks: false, fixErrors: false)

        if result.rebuild {
            try rebuildRefcountStructureLocked(&counts)
            result.corruptions = 0
            result.leaks = 0
            // The old structure is unreferenced now: count again, free its leaks.
            result.rebuild = false
            counts.clear()
            try countReferencesLocked(&counts, &result, fix: false)
            var leakPass = RefcountCheckResult()
            compareRefcountsLocked(counts, &leakPass, fixLeaks: true, fixErrors: false)
            result.leaks += leakPass.leaks
        } else if result.leaks > 0 || result.corruptions > 0 {
            result = beforeCompare
            compareRefcountsLocked(counts, &result, fixLeaks: true, fixErrors: true)
        }
        try checkCopiedFlagsLocked(&result, repair: true)
        if result.checkErrors > 0 {
            throw Qcow2Error.writeFailed(errno: 5 /* EIO */, reason: "Could not repair dirty image")
        }
        return result.corruptions == 0
    }

    /// The check alone (qemu-img check without -r): everything written
    /// back first, then counted and compared; nothing is changed.
    func checkRefcountsLocked() throws -> RefcountCheckResult {
        try map.l2Tables.writeBack()
        try allocator.blocks.writeBack()
        var counts = ComputedRefcounts(
            width: allocator.width, clusterSize: clusterSize, count: sizeToClusters(roundUp(try file.size(), 512)))
        var result = RefcountCheckResult()
        try countReferencesLocked(&counts, &result, fix: false)
        compareRefcountsLocked(counts, &result, fixLeaks: false, fixErrors: false)
        try checkCopiedFlagsLocked(&result, repair: false)
        return result
    }

    // MARK: Counting references (calculate_refcounts)

    private func countReferencesLocked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult, fix: Bool) throws {
        try countLocked(&counts, &result, offset: 0, size: clusterSize)
        try countL1Locked(&counts, &result, offset: header.l1TableOffset, entries: UInt64(map.l1.count), active: true, fix: fix)
        for snapshot in snapshots.snapshots {
            if offsetInCluster(snapshot.l1TableOffset) != 0 || UInt64(snapshot.l1Size) > Qcow2Limits.maxL1TableBytes / 8 {
                result.corruptions += 1
                continue
            }
            try countL1Locked(&counts, &result, offset: snapshot.l1TableOffset, entries: UInt64(snapshot.l1Size),
                              active: false, fix: fix)
        }
        try countLocked(&counts, &result, offset: snapshots.tableOffset, size: snapshots.tableLength)
        try countLocked(&counts, &result, offset: allocator.tableOffset, size: UInt64(allocator.table.count) * 8)
        try countRefcountBlocksLocked(&counts, &result, fix: fix)
    }

    /// qcow2_inc_refcounts_imrt: one more reference to every cluster the
    /// range touches.
    private func countLocked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult,
                             offset: UInt64, size: UInt64) throws {
        guard size > 0 else { return }
        let fileLength = roundUp(try file.size(), 512)
        // The last cluster may reach past the end of the file, by less than a cluster.
        let (end, overflow) = offset.addingReportingOverflow(size)
        if overflow || (end > fileLength && end - fileLength >= clusterSize) {
            result.corruptions += 1
            return
        }
        var cluster = offset >> clusterBits
        let last = (end - 1) >> clusterBits
        while cluster <= last {
            if cluster >= counts.count { counts.grow(to: cluster + 1) }
            let value = counts.get(cluster)
            if value == allocator.width.maxValue {
                result.corruptions += 1
            } else {
                counts.set(cluster, value + 1)
            }
            cluster += 1
        }
    }

    /// check_refcounts_l1: the table, its L2 tables, and what they map.
    private func countL1Locked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult,
                               offset: UInt64, entries: UInt64, active: Bool, fix: Bool) throws {
        guard entries > 0 else { return }
        try countLocked(&counts, &result, offset: offset, size: entries * 8)
        let table = try file.readExactly(Int(entries * 8), at: offset, step: "reading an L1 table")
        for i in 0..<Int(entries) {
            let entry = table.be(UInt64.self, at: i * 8)
            guard entry != 0 else { continue }
            if entry & Qcow2EntryMask.l1Reserved != 0 { result.corruptions += 1 }
            let l2Offset = entry & Qcow2EntryMask.offset
            try countLocked(&counts, &result, offset: l2Offset, size: clusterSize)
            if offsetInCluster(l2Offset) != 0 { result.corruptions += 1 }
            try countL2Locked(&counts, &result, offset: l2Offset, active: active, fix: fix)
        }
    }

    /// check_refcounts_l2.
    private func countL2Locked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult,
                               offset l2Offset: UInt64, active: Bool, fix: Bool) throws {
        let bytes = try file.readExactly(Int(clusterSize), at: l2Offset, step: "reading an L2 table")
        let table = bytes.withUnsafeBytes { L2Table(offset: l2Offset, bigEndianBytes: $0, extendedL2: extendedL2) }
        let allAllocated: UInt64 = 0xffff_ffff
        for i in 0..<table.entryCount {
            var entry = table.entry(i)
            let bitmap = table.bitmap(i)
            let type = clusterType(entry)
            if case .compressed = type {} else if entry & Qcow2EntryMask.l2Reserved != 0 {
                result.corruptions += 1
            }
            switch type {
            case .compressed:
                if entry & Qcow2EntryMask.copied != 0 {
                    entry &= ~Qcow2EntryMask.copied
                    result.corruptions += 1
                }
                if bitmap != 0 {
                    result.corruptions += 1
                    break
                }
                let descriptor = CompressedClusterDescriptor(entry: L2Entry(rawValue: entry), clusterBits: UInt32(clusterBits))
                try countLocked(&counts, &result, offset: descriptor.hostOffset, size: descriptor.byteLength)
            case let .normal(host), let .zeroAllocated(host):
                if (bitmap >> 32) & bitmap != 0 { result.corruptions += 1 }
                if offsetInCluster(host) != 0 {
                    result.corruptions += 1
                    let containsData = extendedL2 ? bitmap & allAllocated != 0 : entry & Qcow2EntryMask.zero == 0
                    if !containsData && fix {
                        // fix_l2_entry_by_zero: a misaligned preallocation
                        // becomes a plain zero cluster.
                        if try zeroMisalignedEntryLocked(table: table, index: i, active: active) {
                            result.corruptions -= 1
                            continue
                        }
                        result.checkErrors += 1
                    }
                }
                try countLocked(&counts, &result, offset: host, size: clusterSize)
            case .zeroPlain:
                break
            case .unallocated:
                if bitmap & allAllocated != 0 { result.corruptions += 1 }
            }
        }
    }

    /// fix_l2_entry_by_zero: rewrites one L2 entry (synced) so that it maps
    /// zeroes without a host cluster.
    private func zeroMisalignedEntryLocked(table: L2Table, index: Int, active: Bool) throws -> Bool {
        if extendedL2 {
            var bitmap = table.bitmap(index)
            bitmap |= bitmap << 32
            bitmap &= 0xffff_ffff_0000_0000
            table.setBitmap(index, bitmap)
            table.setEntry(index, 0)
        } else {
            table.setEntry(index, Qcow2EntryMask.zero)
        }
        let entrySize = extendedL2 ? 16 : 8
        let position = table.offset + UInt64(index * entrySize)
        guard overlap.overlap(offset: position, size: UInt64(entrySize), ignoring: [active ? .activeL2 : .inactiveL2]) == nil else {
            return false
        }
        try file.write(UnsafeRawBufferPointer(rebasing: table.readOnlyBytes[(index * entrySize)..<((index + 1) * entrySize)]),
                       at: position)
        try file.flush()
        return true
    }

    /// check_refblocks: every refcount block is counted and must be
    /// referenced once; blocks past the end of the file are made room for.
    private func countRefcountBlocksLocked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult,
                                           fix: Bool) throws {
        for raw in allocator.table {
            let offset = raw & Qcow2EntryMask.refcountTableOffset
            let cluster = offset >> clusterBits
            if raw & ~Qcow2EntryMask.refcountTableOffset != 0 || offsetInCluster(offset) != 0 {
                result.corruptions += 1
                result.rebuild = true
                continue
            }
            if cluster >= counts.count {
                result.corruptions += 1
                guard fix, offset <= UInt64(Int64.max) - clusterSize else {
                    result.rebuild = true
                    continue
                }
                try file.truncate(to: offset + clusterSize)
                counts.grow(to: max(counts.count, sizeToClusters(roundUp(try file.size(), 512))))
                result.corruptions -= 1
                try countLocked(&counts, &result, offset: offset, size: clusterSize)
                continue
            }
            if offset != 0 {
                try countLocked(&counts, &result, offset: offset, size: clusterSize)
                if counts.get(cluster) != 1 {
                    result.corruptions += 1
                    result.rebuild = true
                }
            }
        }
    }

    // MARK: Comparing (compare_refcounts)

    private func compareRefcountsLocked(_ counts: ComputedRefcounts, _ result: inout RefcountCheckResult,
                                        fixLeaks: Bool, fixErrors: Bool) {
        var cluster: UInt64 = 0
        while cluster < counts.count {
            defer { cluster += 1 }
            let onDisk: UInt64
            do {
                onDisk = try allocator.refcount(ofCluster: cluster)
            } catch {
                result.checkErrors += 1
                continue
            }
            let referenced = counts.get(cluster)
            guard onDisk != referenced else { continue }
            var fixable = false
            if onDisk == 0 {
                result.rebuild = true
            } else if onDisk > referenced && fixLeaks {
                fixable = true
            } else if onDisk < referenced && fixErrors {
                fixable = true
            }
            if fixable {
                let decrease = onDisk > referenced
                let difference = decrease ? onDisk - referenced : referenced - onDisk
                if (try? allocator.updateRefcount(offset: cluster << clusterBits, length: 1, addend: difference,
                                                  decrease: decrease, type: .always)) != nil {
                    continue
                }
            }
            if onDisk < referenced { result.corruptions += 1 } else { result.leaks += 1 }
        }
    }

    // MARK: Rebuilding (rebuild_refcount_structure)

    /// Writes a new refcount structure from `counts`: refcount blocks for
    /// every stretch of clusters in use, then a refcount table, all placed in
    /// free clusters (and counted), then the header names the table. The old
    /// structure is left for the caller to free as leaked.
    private func rebuildRefcountStructureLocked(_ counts: inout ComputedRefcounts) throws {
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
    private func writeRefcountBlocksLocked(_ counts: inout ComputedRefcounts, from first: UInt64, to end: UInt64,
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
    private func allocateInMemory(_ counts: inout ComputedRefcounts, clusters: UInt64, firstFree: inout UInt64) -> UInt64 {
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

    // MARK: COPIED flags (check_oflag_copied)

    /// The COPIED flag of active L1 and L2 entries must be set exactly
    /// where the referenced cluster's refcount is 1; with `repair`, changed
    /// tables are written directly, otherwise mismatches count as corruption.
    private func checkCopiedFlagsLocked(_ result: inout RefcountCheckResult, repair: Bool) throws {
        for i in map.l1.indices {
            let l1Entry = map.l1[i]
            let l2Offset = l1Entry & Qcow2EntryMask.offset
            guard l2Offset != 0 else { continue }
            guard let refcount = try? allocator.refcount(ofCluster: l2Offset >> clusterBits) else { continue }
            if (refcount == 1) != (l1Entry & Qcow2EntryMask.copied != 0) {
                if repair {
                    setL1EntryLocked(i, refcount == 1 ? l1Entry | Qcow2EntryMask.copied : l1Entry & ~Qcow2EntryMask.copied)
                    try writeL1EntryLocked(i)
                } else {
                    result.corruptions += 1
                }
            }
            let bytes = try file.readExactly(Int(clusterSize), at: l2Offset, step: "reading an L2 table")
            let table = bytes.withUnsafeBytes { L2Table(offset: l2Offset, bigEndianBytes: $0, extendedL2: extendedL2) }
            var changed = false
            for j in 0..<table.entryCount {
                let entry = table.entry(j)
                let host: UInt64
                switch clusterType(entry) {
                case let .normal(offset), let .zeroAllocated(offset): host = offset
                default: continue
                }
                guard let refcount = try? allocator.refcount(ofCluster: host >> clusterBits) else { continue }
                if (refcount == 1) != (entry & Qcow2EntryMask.copied != 0) {
                    guard repair else {
                        result.corruptions += 1
                        continue
                    }
                    table.setEntry(j, refcount == 1 ? entry | Qcow2EntryMask.copied : entry & ~Qcow2EntryMask.copied)
                    changed = true
                }
            }
            if changed {
                try checkOverlapLocked(offset: l2Offset, length: clusterSize, ignoring: [.activeL2])
                try file.write(table.readOnlyBytes, at: l2Offset)
                map.l2Tables.discard(l2Offset)
            }
        }
    }
}
