// Completing an allocation: the parts of the new clusters the guest did not
// write are copied from what the guest saw there before (the old cluster, the
// backing file, or zeroes), then the L2 entries are pointed at the new
// clusters (QEMU's handle_alloc_space, merge_cow, perform_cow and
// qcow2_alloc_cluster_link_l2).
//
// Ordering (crash safety):
//  1. guest data and copied regions are written to the new clusters;
//  2. the L2 cache is made to sync the file before its next write, so that
//     an L2 entry never reaches the disk before the data it points to
//     (qcow2_cache_depends_on_flush);
//  3. the L2 cache is made to depend on the refcount cache, so that the new
//     clusters' refcounts reach the disk before the entries using them
//     (unless lazy refcounts are in use and the image is marked dirty);
//  4. the entries are updated; old clusters (a snapshot's, or compressed
//     data) lose their reference last.

extension Qcow2Image {
    // MARK: Before the data is written (lock released)

    /// handle_alloc_space: where the regions to copy read as nothing at all
    /// (unallocated in the whole chain), the new clusters are zeroed in the
    /// file instead, efficiently, and copying is skipped.
    func zeroUnallocatedCopyRegions(_ allocations: [ClusterAllocation]) throws {
        for allocation in allocations {
            let start = allocation.cowStart, end = allocation.cowEnd
            if start.length == 0 && end.length == 0 { continue }
            guard try chainLeavesUnallocated(allocation.guestOffset + start.offset, start.length),
                  try chainLeavesUnallocated(allocation.guestOffset + end.offset, end.length) else { continue }
            let hostStart = allocation.hostOffset + start.offset
            let length = end.offset + end.length - start.offset
            try withWriter { writer, _ in try writer.guarded { try writer.checkOverlap(offset: hostStart, length: length) } }
            if try zeroFileRange(offset: hostStart, length: length) { allocation.skipCow = true }
        }
    }

    /// Zeroes a range of the file without writing zeroes, as QEMU's file
    /// driver does for a zero write that must not fall back to writing
    /// (BlockFile.zeroWithoutWriting). False when the file system offers no
    /// way to: the caller copies instead. Any other failure fails the
    /// request, as in QEMU's handle_alloc_space.
    func zeroFileRange(offset: UInt64, length: UInt64) throws -> Bool {
        try file.zeroWithoutWriting(offset: offset, length: length, mayUnmap: false)
    }

    /// Whether no layer of the chain allocates [offset, offset + length) as
    /// one run (QEMU's is_unallocated): past the image's or a backing file's
    /// end, zeroes count as allocated.
    func chainLeavesUnallocated(_ offset: UInt64, _ length: UInt64) throws -> Bool {
        guard length > 0 else { return true }
        let imageSize = try withWriter { writer, _ in writer.imageSize }
        guard offset < imageSize, length <= imageSize - offset else { return false }
        var layer: BlockImage = self
        while true {
            let status = try layer.blockStatus(at: offset, length: length)
            if status.isAllocated || status.length < length { return false }
            guard let below = layer.backing else { return true }
            guard offset < below.size, length <= below.size - offset else { return false }
            layer = below
        }
    }

    /// merge_cow: when one allocation's regions to copy sit right before and
    /// after the guest data, the three are written together.
    func mergeDataWithCopies(guestOffset: UInt64, data: UnsafeRawBufferPointer, allocations: [ClusterAllocation]) -> Bool {
        for allocation in allocations {
            let start = allocation.cowStart, end = allocation.cowEnd
            if start.length == 0 && end.length == 0 { continue }
            if allocation.skipCow { continue }
            if allocation.guestOffset + start.offset + start.length != guestOffset { continue }
            if allocation.guestOffset + end.offset != guestOffset + UInt64(data.count) { continue }
            allocation.data = data
            return true
        }
        return false
    }
}

extension Qcow2Writer {
    // MARK: After the data is written (lock held)

    /// perform_cow: reads the regions to copy through the image as it is now
    /// (the L2 entries still point to the old data) and writes them (with the
    /// guest data, when merged) to the new clusters. The lock is released
    /// for the I/O.
    private func copyOnWrite(_ allocation: ClusterAllocation, lock: borrowing HeldMetadataLock) throws {
        let start = allocation.cowStart, end = allocation.cowEnd
        if (start.length == 0 && end.length == 0) || allocation.skipCow { return }
        let dataBytes = end.offset - (start.offset + start.length)
        let mergeReads = start.length > 0 && end.length > 0 && dataBytes <= 16384
        let host = allocation.hostOffset
        // The target clusters are this allocation's; check before letting go.
        if let data = allocation.data {
            try checkOverlap(offset: host + start.offset, length: start.length + UInt64(data.count) + end.length)
        } else {
            try checkOverlap(offset: host + start.offset, length: start.length)
            try checkOverlap(offset: host + end.offset, length: end.length)
        }
        // What the I/O needs, as Sendable values: the body of `withoutLock`
        // cannot reach the writer. The guest's buffer is the caller's, which
        // keeps it alive and unchanged until the write returns.
        let image = image, file = file, guest = allocation.guestOffset
        nonisolated(unsafe) let data = allocation.data
        try lock.withoutLock {
            var startBytes = [UInt8](repeating: 0, count: Int(start.length))
            var endBytes = [UInt8](repeating: 0, count: Int(end.length))
            if mergeReads {
                var all = [UInt8](repeating: 0, count: Int(end.offset + end.length - start.offset))
                try all.withUnsafeMutableBytes { try image.readGuest(into: $0, at: guest + start.offset) }
                startBytes = Array(all[..<Int(start.length)])
                endBytes = Array(all[Int(end.offset - start.offset)...])
            } else {
                if start.length > 0 {
                    try startBytes.withUnsafeMutableBytes { try image.readGuest(into: $0, at: guest + start.offset) }
                }
                if end.length > 0 {
                    try endBytes.withUnsafeMutableBytes { try image.readGuest(into: $0, at: guest + end.offset) }
                }
            }
            if let data {
                var combined = startBytes
                combined += data
                combined += endBytes
                try file.write(combined, at: host + start.offset)
            } else {
                if start.length > 0 { try file.write(startBytes, at: host + start.offset) }
                if end.length > 0 { try file.write(endBytes, at: host + end.offset) }
            }
        }
        // The copied data must be on disk before an L2 entry points to it.
        map.l2Tables.needsFileSyncFirst = true
    }

    /// qcow2_alloc_cluster_link_l2: copy on write, then the L2 entries.
    func link(_ allocation: ClusterAllocation, lock: borrowing HeldMetadataLock) throws {
        try copyOnWrite(allocation, lock: lock)

        if useLazyRefcounts { try markDirty() }
        if needsAccurateRefcounts {
            try map.l2Tables.setDependency(on: allocator.blocks)
        } else {
            // Data before pointers, without refcounts: the refcount flush
            // that the dependency above brings is what makes a new
            // cluster's data (and the file length it extends) durable
            // before its L2 entry. With lazy refcounts nothing else would,
            // and an entry that reached the disk alone could point past
            // the end of the file, which the repair on open cannot mend
            // (QEMU syncs here only after a copy on write; found by the
            // power-loss tests).
            map.l2Tables.needsFileSyncFirst = true
        }

        let (table, index) = try clusterTable(for: allocation.guestOffset)
        table.isDirty = true
        precondition(index + allocation.clusterCount <= Int(l2Entries))
        var oldEntries: [UInt64] = []
        for i in 0..<allocation.clusterCount {
            let host = allocation.hostOffset + (UInt64(i) << clusterBits)
            // A concurrent allocation of the same cluster may have won.
            let old = table.entry(index + i)
            if old != 0 { oldEntries.append(old) }
            table.setEntry(index + i, host | Qcow2EntryMask.copied)
            if extendedL2 && !allocation.isPreallocation {
                // The subclusters just written (data and copies) are allocated.
                let from = max(allocation.cowStart.offset, UInt64(i) << clusterBits)
                let to = min(allocation.cowEnd.offset + allocation.cowEnd.length, UInt64(i + 1) << clusterBits)
                precondition(from < to)
                let range = SubclusterRange(first: subclusterIndex(from), end: subclusterIndex(to - 1) + 1)
                var bitmap = table.bitmap(index + i)
                bitmap |= range.allocatedBits
                bitmap &= ~range.zeroBits
                table.setBitmap(index + i, bitmap)
            }
        }
        // Old clusters lose a reference; those that reach zero are not
        // discarded (the next write is likely to reuse them).
        if !allocation.keepsOldClusters {
            for old in oldEntries { freeAnyCluster(entry: old, type: .never) }
        }
    }
}

/// Subclusters [first, end) of one cluster, as bitmap bits
/// (QCOW_OFLAG_SUB_ALLOC_RANGE and QCOW_OFLAG_SUB_ZERO_RANGE).
struct SubclusterRange {
    var first: Int
    var end: Int

    var allocatedBits: UInt64 {
        guard end > first else { return 0 }
        let width = end - first
        let mask: UInt64 = width >= 64 ? .max : (UInt64(1) << UInt64(width)) - 1
        return (mask << UInt64(first)) & 0xffff_ffff
    }
    var zeroBits: UInt64 { allocatedBits << 32 }
}
