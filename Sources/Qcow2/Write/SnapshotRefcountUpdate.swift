// The references of a whole cluster tree (an L1 table, its L2 tables and
// their data clusters) gained or dropped at once, and the COPIED flags made
// right: QEMU's qcow2_update_snapshot_refcount, which every snapshot
// operation runs (create +1 on the active tree; apply +1 on the snapshot's,
// -1 on the old active one; delete -1 on the snapshot's; then 0 on the
// active tree to set COPIED where a refcount fell back to 1).
//
// Per L2 entry: its cluster's refcount is changed (compressed data by the
// bytes it spans), COPIED is set exactly when the refcount is 1 (never for
// compressed clusters), and a changed entry is marked dirty in the L2 cache.
// Ordering (crash safety):
//  - references gained: the refcounts reach the disk before any L2 entry
//    losing COPIED (the L2 cache depends on the refcount cache), so a crash
//    never leaves a shared cluster marked as owned;
//  - references dropped: the refcount cache depends on the L2 cache (the
//    allocator sets that up);
//  - everything is flushed before the L1 table is rewritten (with addend
//    >= 0, if an entry's COPIED flag changed), and freed clusters are
//    discarded in the file only at the end.
// The active table (`l1Offset` is the header's) is taken from memory and
// changed there as the walk goes, as QEMU's is: snapshot apply relies on
// the in-memory table still being the old one after the file's was replaced.

extension Qcow2Writer {
    /// Adds `addend` (-1, 0 or 1) to the refcount of every cluster the L1
    /// table at `l1Offset` (with `l1Size` entries) references, and updates
    /// the COPIED flags of its L1 and L2 entries.
    func updateSnapshotRefcount(l1Offset: UInt64, l1Size: Int, addend: Int) throws {
        precondition((-1...1).contains(addend))
        let isActive = l1Offset == header.l1TableOffset
        var l1: [UInt64]
        if isActive {
            precondition(l1Size == map.l1.count)
            l1 = map.l1
        } else {
            l1 = try readL1Table(at: l1Offset, entries: l1Size)
        }

        allocator.discards.isDeferring = true
        var l1Modified = false
        var failure: Error?
        do {
            for i in 0..<l1Size where l1[i] != 0 {
                let oldL1Entry = l1[i]
                var l1Entry = oldL1Entry & Qcow2EntryMask.offset
                guard offsetInCluster(l1Entry) == 0 else {
                    throw Qcow2Error.corruptMetadata("L2 table offset \(hex(l1Entry)) unaligned (L1 index: \(hex(i)))")
                }
                try updateL2TableRefcounts(at: l1Entry, l1Index: i, addend: addend)
                let refcount = try changeRefcount(ofCluster: l1Entry, addend: addend)
                if refcount == 1 { l1Entry |= Qcow2EntryMask.copied }
                if l1Entry != oldL1Entry {
                    l1[i] = l1Entry
                    l1Modified = true
                    if isActive { map.l1[i] = l1Entry }
                }
            }
            // bdrv_flush: the caches, then the file.
            try writeCaches()
            try file.flush()
        } catch {
            failure = error
        }
        allocator.discards.isDeferring = false
        allocator.processDiscards(succeeded: failure == nil)
        if let failure { throw failure }

        // A table being deleted is not rewritten.
        if addend >= 0 && l1Modified {
            var encoded = [UInt8](repeating: 0, count: l1Size * 8)
            for (i, entry) in l1.enumerated() where entry != 0 { encoded.setBE(entry, at: i * 8) }
            try file.write(encoded, at: l1Offset)
            try file.flush()
        }
    }

    /// One L2 table's entries: refcounts changed, COPIED flags updated.
    private func updateL2TableRefcounts(at l2Offset: UInt64, l1Index: Int, addend: Int) throws {
        let table = try map.l2Table(at: l2Offset, l1Index: UInt64(l1Index))
        for j in 0..<Int(l2Entries) {
            let oldEntry = table.entry(j)
            var entry = oldEntry & ~Qcow2EntryMask.copied
            let refcount: UInt64
            switch clusterType(entry) {
            case let .compressed(descriptor):
                if addend != 0 {
                    try allocator.updateRefcount(offset: descriptor.hostOffset, length: descriptor.byteLength,
                                                 addend: 1, decrease: addend < 0, type: .snapshot)
                }
                // Compressed clusters are never rewritten in place.
                refcount = 2
            case let .normal(host), let .zeroAllocated(host):
                guard offsetInCluster(host) == 0 else {
                    throw Qcow2Error.corruptMetadata(
                        "Cluster allocation offset \(hex(host)) unaligned (L2 offset: \(hex(l2Offset)), L2 index: \(hex(j)))")
                }
                refcount = try changeRefcount(ofCluster: host, addend: addend)
            case .zeroPlain, .unallocated:
                refcount = 0
            }
            if refcount == 1 { entry |= Qcow2EntryMask.copied }
            guard entry != oldEntry else { continue }
            // A cluster now shared must be counted on disk before its entry
            // stops claiming it alone.
            if addend > 0 { try map.l2Tables.setDependency(on: allocator.blocks) }
            table.setEntry(j, entry)
            table.isDirty = true
        }
    }

    /// qcow2_update_cluster_refcount (for a non-zero addend), then the
    /// cluster's refcount.
    private func changeRefcount(ofCluster offset: UInt64, addend: Int) throws -> UInt64 {
        if addend != 0 {
            try allocator.updateRefcount(offset: offset, length: clusterSize, addend: 1,
                                         decrease: addend < 0, type: .snapshot)
        }
        return try allocator.refcount(ofCluster: offset >> clusterBits)
    }

    /// An inactive L1 table read from the file (validated by the caller, so
    /// at most 32 MiB); what lies past the end of the file reads as zeroes,
    /// as QEMU's reads do.
    func readL1Table(at offset: UInt64, entries: Int) throws -> [UInt64] {
        var table = [UInt64](repeating: 0, count: entries)
        guard entries > 0 else { return table }
        _ = try table.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
        for i in table.indices { table[i] = UInt64(bigEndian: table[i]) }
        return table
    }
}
