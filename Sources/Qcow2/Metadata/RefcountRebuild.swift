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

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
        bytes = [UInt8](repeating: 0, count: bytes.count)
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
            throw Qcow2Error.writeFailed(errno: EIO, reason: "Could not repair dirty image")
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

    // MARK: Comparing (compare_refcounts)

    func compareRefcountsLocked(_ counts: ComputedRefcounts, _ result: inout RefcountCheckResult,
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

    // MARK: COPIED flags (check_oflag_copied)

    /// The COPIED flag of active L1 and L2 entries must be set exactly
    /// where the referenced cluster's refcount is 1; with `repair`, changed
    /// tables are written directly, otherwise mismatches count as corruption.
    func checkCopiedFlagsLocked(_ result: inout RefcountCheckResult, repair: Bool) throws {
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
