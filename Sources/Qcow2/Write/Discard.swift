// Discards (qemu-io discard), as QEMU's block layer and qcow2 driver make
// them (bdrv_co_pdiscard, qcow2_co_pdiscard, qcow2_cluster_discard,
// discard_in_l2_slice):
//  - only whole clusters are discarded (and the partial cluster at the end
//    of an image whose size is not cluster aligned); partial clusters at the
//    request's edges are left alone;
//  - a discarded cluster reads as zeroes afterwards: version 3 images get
//    the zero flag (with extended L2 entries, all zero bits) where a backing
//    file would show through or the cluster was allocated; version 2 images
//    just unmap it, and refuse discards when a backing file would show;
//  - the cluster's reference is dropped, and a freed host cluster is punched
//    out of the file, once the whole request is done.

extension Qcow2Image {
    /// Discards guest data (the range checked by the caller).
    func discardGuestData(at offset: UInt64, length: UInt64) throws {
        let alignment = clusterMap.clusterSize
        var head = offset % alignment
        let tail = (offset + length) % alignment
        var position = offset
        var remaining = length
        while remaining > 0 {
            var piece = remaining
            if head != 0 {
                piece = min(remaining, alignment - head)
                head = (head + piece) % alignment
            } else if tail != 0 && piece > alignment {
                piece -= tail
            }
            try discardPiece(at: position, length: piece)
            position += piece
            remaining -= piece
        }
    }

    /// qcow2_co_pdiscard: refuses (silently, as the block layer ignores
    /// -ENOTSUP) what cannot be discarded.
    private func discardPiece(at offset: UInt64, length: UInt64) throws {
        let clusterSize = clusterMap.clusterSize
        // Without zero flags, stale backing data would show through.
        if clusterMap.geometry.version < 3 && backing != nil { return }
        if (offset | length) & (clusterSize - 1) != 0 {
            // Partial clusters are ignored, but for the image's last one.
            guard offset & (clusterSize - 1) == 0, try offset + length == writerImageSize() else { return }
        }
        try withWriter { writer, _ in
            try writer.guarded {
                try writer.discardClusters(offset: offset, length: length, type: .request, fullDiscard: false)
            }
        }
    }
}

extension Qcow2Writer {
    /// qcow2_cluster_discard: whole clusters from `offset` (aligned; the
    /// length may end at the image's end). With `fullDiscard` the clusters
    /// become unallocated (the backing shows through); without, they read as
    /// zeroes where the format allows it.
    func discardClusters(offset: UInt64, length: UInt64, type: DiscardType, fullDiscard: Bool) throws {
        var clusters = sizeToClusters(length)
        var start = offset
        allocator.discards.isDeferring = true
        var succeeded = false
        defer {
            allocator.discards.isDeferring = false
            allocator.processDiscards(succeeded: succeeded, durably: fullDiscard && backingFileName != nil)
        }
        while clusters > 0 {
            let cleared = try discardInTable(at: start, count: clusters, type: type, fullDiscard: fullDiscard)
            clusters -= cleared
            start += cleared * clusterSize
        }
        succeeded = true
    }

    /// discard_in_l2_slice: up to `count` clusters within one L2 table;
    /// returns how many it covered.
    private func discardInTable(at offset: UInt64, count: UInt64, type: DiscardType, fullDiscard: Bool) throws -> UInt64 {
        let (table, index) = try clusterTable(for: offset)
        let n = min(count, l2Entries - UInt64(index))
        for i in 0..<Int(n) {
            let oldEntry = table.entry(index + i)
            let oldBitmap = table.bitmap(index + i)
            var newEntry = oldEntry
            var newBitmap = oldBitmap
            let isAllocated: Bool
            switch clusterType(oldEntry) {
            case .normal, .compressed, .zeroAllocated: isAllocated = true
            case .unallocated, .zeroPlain: isAllocated = false
            }
            if fullDiscard {
                newEntry = 0
                newBitmap = 0
            } else if image.backing != nil || isAllocated {
                // Read back as zeroes (version 2 cannot say so: unmap only).
                if extendedL2 {
                    newEntry = 0
                    newBitmap = SubclusterRange(first: 0, end: 32).zeroBits
                } else {
                    newEntry = version >= 3 ? Qcow2EntryMask.zero : 0
                }
            }
            if oldEntry == newEntry && oldBitmap == newBitmap { continue }
            // The entry first, then the refcount.
            table.isDirty = true
            table.setEntry(index + i, newEntry)
            if extendedL2 { table.setBitmap(index + i, newBitmap) }
            freeAnyCluster(entry: oldEntry, type: type)
        }
        return n
    }
}
