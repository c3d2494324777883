// Zero clusters turned into something version 2 images understand, before a
// downgrade: QEMU 7.2's qcow2_expand_zero_clusters. Walks the active L1
// table (its L2 tables through the cache), then every snapshot's L1 table
// (their L2 tables read and written directly), and for each zero cluster:
//  - without a backing file and without a preallocated cluster, the entry is
//    simply cleared (unallocated reads as zeroes);
//  - otherwise the cluster (preallocated, or newly allocated; a new one
//    shared as often as its L2 table is) is zeroed in the file and the entry
//    becomes a normal one, COPIED when its L2 table is not shared.
// The zeroes reach the disk before the L2 tables naming them, and every
// table rewritten reaches it before the expansion returns.
// Version 2 images have no extended L2 entries: the downgrade refused those.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// `progress(done, total)` counts L1 entries visited, every table's.
    func expandZeroClusters(progress: (UInt64, UInt64) -> Void) throws {
        precondition(!extendedL2)
        let total = UInt64(map.l1.count) + snapshots.entries.reduce(0) { $0 + UInt64($1.l1Size) }
        var visited: UInt64 = 0
        try expandZeroClusters(in: map.l1, active: true, visited: &visited, total: total, progress: progress)
        // Snapshot L1 tables may name active L2 tables: those must be on disk
        // (and out of the cache) before they are changed directly.
        try map.l2Tables.flush()
        map.l2Tables.removeAll()
        for snapshot in snapshots.entries {
            try validateSnapshotL1Table(snapshot)
            let l1 = try readL1Table(at: snapshot.l1TableOffset, entries: Int(snapshot.l1Size))
            try expandZeroClusters(in: l1, active: false, visited: &visited, total: total, progress: progress)
        }
        // The snapshots' tables are written directly: synced before the
        // caller goes on to the version 2 header, which has no zero flag
        // (found by the power-loss suite's downgrade workload).
        if !snapshots.entries.isEmpty { try file.flush() }
    }

    private func expandZeroClusters(in l1: [UInt64], active: Bool, visited: inout UInt64, total: UInt64,
                                    progress: (UInt64, UInt64) -> Void) throws {
        let hasBacking = image.backing != nil
        for (l1Index, l1Entry) in l1.enumerated() {
            let l2Offset = l1Entry & Qcow2EntryMask.offset
            defer {
                visited += 1
                progress(visited, total)
            }
            guard l2Offset != 0 else { continue }
            guard l2Offset & (clusterSize - 1) == 0 else {
                throw signalCorruption("L2 table offset \(hex(l2Offset)) unaligned (L1 index: \(hex(l1Index)))")
            }
            let l2Refcount = try allocator.refcount(ofCluster: l2Offset >> clusterBits)

            // The active table's L2 tables come from the cache, others from disk.
            let cached = active ? try map.l2Tables.get(l2Offset) : nil
            var entries: [UInt64]
            if let cached {
                entries = (0..<Int(l2Entries)).map { cached.entry($0) }
            } else {
                var bytes = [UInt8](repeating: 0, count: Int(clusterSize))
                _ = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: l2Offset) }
                entries = (0..<Int(l2Entries)).map { bytes.be(UInt64.self, at: $0 * 8) }
            }
            var dirty = false
            for j in entries.indices {
                let entry = entries[j]
                var offset: UInt64
                switch clusterType(entry) {
                case .zeroPlain:
                    if !hasBacking {
                        entries[j] = 0
                        dirty = true
                        continue
                    }
                    offset = try allocator.allocateClusters(clusterSize)
                    if l2Refcount > 1 {
                        // A shared L2 table: the new cluster is as shared as it is.
                        do {
                            try allocator.updateRefcount(offset: offset, length: clusterSize, addend: l2Refcount - 1,
                                                         decrease: false, type: .other)
                        } catch {
                            freeClusters(offset: offset, length: clusterSize, type: .other)
                            throw error
                        }
                    }
                case let .zeroAllocated(hostOffset):
                    offset = hostOffset
                    if offset & (clusterSize - 1) != 0 {
                        throw signalCorruption("Cluster allocation offset \(hex(offset)) unaligned "
                                               + "(L2 offset: \(hex(l2Offset)), L2 index: \(hex(j)))")
                    }
                default:
                    continue
                }
                do {
                    try checkOverlap(offset: offset, length: clusterSize)
                    try writeFileZeroes(offset: offset, length: clusterSize)
                } catch {
                    if case .zeroPlain = clusterType(entry) { freeClusters(offset: offset, length: clusterSize, type: .always) }
                    throw error
                }
                entries[j] = l2Refcount == 1 ? offset | Qcow2EntryMask.copied : offset
                dirty = true
            }
            guard dirty else { continue }
            if let cached {
                for j in entries.indices { cached.setEntry(j, entries[j]) }
                cached.isDirty = true
                // The zeroes are synced before the table is written; and the
                // new clusters' refcounts before it, too.
                map.l2Tables.needsFileSyncFirst = true
                try map.l2Tables.setDependency(on: allocator.blocks)
            } else {
                // Written directly: the zeroes and refcounts go first.
                try allocator.blocks.flush()
                try file.flush()
                try checkOverlap(offset: l2Offset, length: clusterSize, ignoring: [.inactiveL2, .activeL2])
                var bytes = [UInt8](repeating: 0, count: Int(clusterSize))
                for j in entries.indices { bytes.setBE(entries[j], at: j * 8) }
                try file.write(bytes, at: l2Offset)
            }
        }
    }

    /// bdrv_pwrite_zeroes on the image file without unmapping: zeroed by
    /// the file system where it can, else written.
    private func writeFileZeroes(offset: UInt64, length: UInt64) throws {
        if try file.zeroWithoutWriting(offset: offset, length: length, mayUnmap: false) { return }
        try file.write([UInt8](repeating: 0, count: Int(length)), at: offset)
    }
}
