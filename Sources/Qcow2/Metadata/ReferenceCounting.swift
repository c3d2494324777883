// Counting the references an image's metadata holds, for the refcount check
// and repair (QEMU's calculate_refcounts, check_refcounts_l1/_l2,
// check_refblocks and qcow2_inc_refcounts_imrt): every cluster the header,
// the L1 and L2 tables (active and snapshots'), the data and compressed
// clusters, the snapshot table and the refcount structure use gets one
// reference per use in a `ComputedRefcounts`. Problems found on the way are
// counted as corruption; with `fix`, misaligned preallocated clusters become
// zero clusters and refcount blocks past the end of the file get room, as
// QEMU fixes them.

extension Qcow2Writer {
    /// How far past the end of the file a refcount block may lie and still
    /// be made room for by a repair.
    static let maxRefcountBlockDistance: UInt64 = 1 << 30

    // MARK: Counting references (calculate_refcounts)

    func countReferencesLocked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult, fix: Bool) throws {
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
    func countLocked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult,
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
    func countL1Locked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult,
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
    func countL2Locked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult,
                               offset l2Offset: UInt64, active: Bool, fix: Bool) throws {
        let bytes = try file.readExactly(Int(clusterSize), at: l2Offset, step: "reading an L2 table")
        let table = bytes.withUnsafeBytes { L2Table(offset: l2Offset, bigEndianBytes: $0, extendedL2: extendedL2) }
        let allAllocated: UInt64 = 0xffff_ffff
        for i in 0..<table.entryCount {
            var entry = table.entry(i)
            let bitmap = table.bitmap(i)
            let type = clusterType(entry)
            // Reserved bits of standard descriptors.
            if entry & Qcow2EntryMask.compressed == 0 && entry & Qcow2EntryMask.l2Reserved != 0 {
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
    func zeroMisalignedEntryLocked(table: L2Table, index: Int, active: Bool) throws -> Bool {
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
    func countRefcountBlocksLocked(_ counts: inout ComputedRefcounts, _ result: inout RefcountCheckResult,
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
                // QEMU grows the file to hold the block; a block far past the
                // end (hostile input) would make it, and the counts, huge:
                // such a structure is rebuilt instead.
                let fileLength = try file.size()
                guard fix, offset <= UInt64(Int64.max) - clusterSize,
                      offset < fileLength || offset - fileLength < Self.maxRefcountBlockDistance else {
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

}
