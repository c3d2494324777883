// Where a write's guest data goes (QEMU's qcow2_alloc_host_offset with
// handle_dependencies, handle_copied, handle_alloc and calculate_l2_meta):
// from the request's start, as many bytes as can go to one contiguous host
// range:
//  - clusters that are allocated with refcount 1 (COPIED) are rewritten in
//    place;
//  - clusters that are unallocated, zero, compressed or shared with a
//    snapshot get new clusters, as many in a row as the L2 table and the
//    request allow, contiguous with what precedes them when they can be;
//  - each run of new clusters (and, with extended L2 entries, each cluster
//    whose untouched subclusters must be filled in) becomes a
//    `ClusterAllocation` that is entered into its L2 table only once the
//    data and the copy-on-write regions are on disk;
//  - a request overlapping an allocation still in flight (another thread's)
//    stops short of it, or waits for it.

/// New clusters whose L2 entries are written once their data is (QEMU's
/// QCowL2Meta). Offsets of the regions are relative to `guestOffset`.
/// Listed in `Qcow2Writer.inFlight` and held by the request that made it,
/// which alone changes its `var`s, also with the metadata lock released;
/// other requests read only its `let`s.
final class ClusterAllocation {
    /// Guest offset of the first cluster.
    let guestOffset: UInt64
    /// Host offset of the first cluster.
    let hostOffset: UInt64
    let clusterCount: Int
    /// The clusters were mapped before (subclusters are being filled in).
    let keepsOldClusters: Bool
    /// What to copy before and after the guest data.
    let cowStart: (offset: UInt64, length: UInt64)
    let cowEnd: (offset: UInt64, length: UInt64)
    /// The copy-on-write regions are known to read as zeroes and were
    /// zeroed in the file already.
    var skipCow = false
    /// The guest data, when it is written together with the copied regions.
    var data: UnsafeRawBufferPointer?
    /// Made by preallocation (QEMU's prealloc): no guest data was written,
    /// so extended L2 bitmaps are left alone and the subclusters keep
    /// reading from the backing file.
    var isPreallocation = false

    init(guestOffset: UInt64, hostOffset: UInt64, clusterCount: Int, keepsOldClusters: Bool,
         cowStart: (UInt64, UInt64), cowEnd: (UInt64, UInt64)) {
        self.guestOffset = guestOffset
        self.hostOffset = hostOffset
        self.clusterCount = clusterCount
        self.keepsOldClusters = keepsOldClusters
        self.cowStart = cowStart
        self.cowEnd = cowEnd
    }

    /// The guest range the allocation covers, in whole clusters.
    func guestRange(clusterSize: UInt64) -> Range<UInt64> {
        let start = (guestOffset + cowStart.offset) & ~(clusterSize - 1)
        let end = guestOffset + cowEnd.offset + cowEnd.length
        return start..<((end + clusterSize - 1) & ~(clusterSize - 1))
    }
}

/// The outcome of mapping (part of) a write.
enum HostMapping {
    /// `bytes` from the request's start go to `hostOffset`.
    case mapped(hostOffset: UInt64, bytes: UInt64, allocations: [ClusterAllocation])
    /// An allocation in flight is in the way, and the caller holds
    /// allocations of its own that it must complete before waiting.
    case mustWait
}

extension Qcow2Writer {
    /// Maps as much of [offset, offset + bytes) as goes to one contiguous
    /// host range, allocating clusters as needed. With `mayWait`, waits for
    /// in-flight allocations in the way; otherwise reports `.mustWait`.
    func mapForWrite(offset: UInt64, bytes: UInt64, mayWait: Bool, lock: borrowing HeldMetadataLock) throws -> HostMapping {
        again: while true {
            var start = offset
            var remaining = bytes
            var clusterOffset: UInt64?
            var hostOffset: UInt64?
            var current: UInt64 = 0
            var allocations: [ClusterAllocation] = []
            do {
                while true {
                    if hostOffset == nil, let c = clusterOffset { hostOffset = c }
                    start += current
                    remaining -= current
                    if let c = clusterOffset { clusterOffset = c + current }
                    if remaining == 0 { break }
                    current = remaining

                    // 1. Allocations in flight: stop short of one, or wait for it.
                    if !dependenciesAllow(start: start, bytes: &current, haveAllocations: !allocations.isEmpty) {
                        guard mayWait else { return .mustWait }
                        lock.wait()
                        continue again
                    }
                    if current == 0 { break }
                    // 2. Clusters rewritten in place.
                    if try mapInPlace(guestOffset: start, hostOffset: &clusterOffset, bytes: &current, allocations: &allocations) {
                        continue
                    }
                    if current == 0 { break }
                    // 3. New clusters, after `clusterOffset` if there is one.
                    if try allocateNew(guestOffset: start, hostOffset: &clusterOffset, bytes: &current, allocations: &allocations) {
                        continue
                    }
                    break
                }
            } catch {
                for allocation in allocations { abort(allocation, lock: lock) }
                throw error
            }
            guard let hostOffset else { throw Qcow2Error.corruptMetadata("no host cluster could be mapped") }
            return .mapped(hostOffset: hostOffset, bytes: bytes - remaining, allocations: allocations)
        }
    }

    /// handle_dependencies: false when the request must wait for an
    /// allocation in flight; otherwise `bytes` may be shortened to stop
    /// before one (zero: stop here).
    private func dependenciesAllow(start: UInt64, bytes: inout UInt64, haveAllocations: Bool) -> Bool {
        var length = bytes
        for old in inFlight {
            let range = old.guestRange(clusterSize: clusterSize)
            let end = start + length
            if end <= range.lowerBound || start >= range.upperBound { continue }
            length = start < range.lowerBound ? range.lowerBound - start : 0
            if length == 0 {
                // With allocations of its own gathered, the request stops
                // here rather than waiting (they would be invalid after it).
                if haveAllocations { bytes = 0; return true }
                return false
            }
        }
        bytes = length
        return true
    }

    /// cluster_needs_new_alloc: unallocated, zero, compressed, or shared.
    func needsNewAllocation(_ entry: UInt64) -> Bool {
        switch clusterType(entry) {
        case .normal, .zeroAllocated: return entry & Qcow2EntryMask.copied == 0
        case .unallocated, .zeroPlain, .compressed: return true
        }
    }

    /// count_single_write_clusters: how many entries from `index` on (at most
    /// `count`) need a new allocation, or (without `newAllocation`) can be
    /// rewritten in place at contiguous host offsets.
    private func countSingleWriteClusters(_ count: UInt64, table: L2Table, index: Int, newAllocation: Bool) -> UInt64 {
        var expected = table.entry(index) & Qcow2EntryMask.offset
        var i: UInt64 = 0
        while i < count {
            let entry = table.entry(index + Int(i))
            if needsNewAllocation(entry) != newAllocation { break }
            if !newAllocation {
                if expected != entry & Qcow2EntryMask.offset { break }
                expected += clusterSize
            }
            i += 1
        }
        return i
    }

    /// The clusters one step may look at: to the end of the L2 table, and
    /// no more than BDRV_REQUEST_MAX_BYTES.
    private func clustersToConsider(guestOffset: UInt64, bytes: UInt64) -> UInt64 {
        var count = sizeToClusters(offsetInCluster(guestOffset) + bytes)
        count = min(count, l2Entries - UInt64(l2Index(guestOffset)))
        return min(count, Qcow2Limits.maxRequestBytes >> clusterBits)
    }

    /// handle_copied: maps the run of in-place clusters at `guestOffset`
    /// (they must continue `hostOffset` when it is set). Returns false when
    /// there are none (`bytes` 0 if one was there but elsewhere on disk).
    private func mapInPlace(
        guestOffset: UInt64, hostOffset: inout UInt64?, bytes: inout UInt64, allocations: inout [ClusterAllocation]
    ) throws -> Bool {
        let count = clustersToConsider(guestOffset: guestOffset, bytes: bytes)
        let (table, index) = try clusterTable(for: guestOffset)
        let entry = table.entry(index)
        let clusterOffset = entry & Qcow2EntryMask.offset
        guard !needsNewAllocation(entry) else { return false }
        guard offsetInCluster(clusterOffset) == 0 else {
            let kind = entry & Qcow2EntryMask.zero != 0 ? "Preallocated zero" : "Data"
            throw Qcow2Error.corruptMetadata(
                "\(kind) cluster offset \(hex(clusterOffset)) unaligned (guest offset: \(hex(guestOffset)))")
        }
        if let required = hostOffset, required != clusterOffset {
            bytes = 0
            return false
        }
        let keep = countSingleWriteClusters(count, table: table, index: index, newAllocation: false)
        bytes = min(bytes, keep * clusterSize - offsetInCluster(guestOffset))
        if let allocation = try calculateAllocation(
            hostCluster: clusterOffset, guestOffset: guestOffset, bytes: bytes, table: table, index: index, keepOld: true) {
            allocations.append(allocation)
        }
        hostOffset = clusterOffset + offsetInCluster(guestOffset)
        return true
    }

    /// handle_alloc: allocates new clusters for the run at `guestOffset`
    /// that needs them, at `hostOffset` when it is set (returning false with
    /// `bytes` 0 when nothing can be allocated there).
    private func allocateNew(
        guestOffset: UInt64, hostOffset: inout UInt64?, bytes: inout UInt64, allocations: inout [ClusterAllocation]
    ) throws -> Bool {
        var count = clustersToConsider(guestOffset: guestOffset, bytes: bytes)
        let (table, index) = try clusterTable(for: guestOffset)
        count = countSingleWriteClusters(count, table: table, index: index, newAllocation: true)
        guard count > 0 else { throw Qcow2Error.corruptMetadata("nothing to allocate at guest offset \(hex(guestOffset))") }

        let allocOffset: UInt64
        if let required = hostOffset {
            allocOffset = startOfCluster(required)
            count = try allocator.allocateClusters(at: allocOffset, count: count)
        } else {
            allocOffset = try allocator.allocateClusters(count * clusterSize)
        }
        if count == 0 {
            bytes = 0
            return false
        }
        let requested = bytes + offsetInCluster(guestOffset)
        let mapped = min(requested, count << clusterBits)
        hostOffset = allocOffset + offsetInCluster(guestOffset)
        bytes = min(bytes, mapped - offsetInCluster(guestOffset))
        do {
            if let allocation = try calculateAllocation(
                hostCluster: allocOffset, guestOffset: guestOffset, bytes: bytes, table: table, index: index, keepOld: false) {
                allocations.append(allocation)
            }
        } catch {
            freeClusters(offset: allocOffset, length: count << clusterBits, type: .never)
            throw error
        }
        return true
    }

    /// calculate_l2_meta: the allocation for `bytes` of guest data at
    /// `guestOffset` going to the clusters from `hostCluster` on, with the
    /// regions to copy around it; nil when the write needs no L2 update
    /// (in place, every touched subcluster already allocated).
    private func calculateAllocation(
        hostCluster: UInt64, guestOffset: UInt64, bytes: UInt64, table: L2Table, index: Int, keepOld: Bool
    ) throws -> ClusterAllocation? {
        let cowStartTo = offsetInCluster(guestOffset)
        let cowEndFrom = cowStartTo + bytes
        let count = Int(sizeToClusters(cowEndFrom))
        precondition(index + count <= Int(l2Entries))

        // Check the type of every subcluster touched; in place, any that is
        // not allocated yet needs an update.
        var skipCow = keepOld
        for i in 0..<count {
            let entry = table.entry(index + i), bitmap = table.bitmap(index + i)
            var type: SubclusterType
            if skipCow {
                let writeFrom = max(cowStartTo, UInt64(i) << clusterBits)
                let writeTo = min(cowEndFrom, UInt64(i + 1) << clusterBits)
                let first = subclusterIndex(writeFrom), last = subclusterIndex(writeTo - 1)
                let run = SubclusterClassification.run(entry: entry, bitmap: bitmap, from: first, extendedL2: extendedL2)
                type = run.type
                if type != .normal || first + run.count <= last { skipCow = false }
            } else {
                type = subclusterType(entry: entry, bitmap: bitmap, index: 0)
            }
            if type == .invalid {
                let l2Offset = map.l1[l1Index(guestOffset)] & Qcow2EntryMask.offset
                throw Qcow2Error.corruptMetadata(
                    "Invalid cluster entry found (L2 offset: \(hex(l2Offset)), L2 index: \(hex(index + i)))")
            }
        }
        if skipCow { return nil }

        // Where copying starts: the first cluster's start, or its touched
        // subcluster's when nothing before it needs copying.
        var entry = table.entry(index), bitmap = table.bitmap(index)
        var sc = subclusterIndex(guestOffset)
        let cowStartFrom: UInt64
        switch (keepOld, subclusterType(entry: entry, bitmap: bitmap, index: sc)) {
        case (false, .compressed):
            cowStartFrom = 0
        case (false, .normal), (false, .zeroAllocated), (false, .unallocatedAllocated):
            // Leading subclusters that are not allocated need no copy.
            let allocated = UInt32(truncatingIfNeeded: bitmap)
            cowStartFrom = extendedL2 ? UInt64(min(sc, allocated.trailingZeroBitCount)) << subclusterBits : 0
        case (false, .zeroPlain), (false, .unallocatedPlain), (true, .zeroAllocated), (true, .unallocatedAllocated):
            cowStartFrom = UInt64(sc) << subclusterBits
        case (true, .normal):
            cowStartFrom = cowStartTo
        default:
            throw Qcow2Error.corruptMetadata("unexpected cluster entry \(hex(entry)) at guest offset \(hex(guestOffset))")
        }

        // Where copying ends, in the last cluster.
        let last = index + count - 1
        entry = table.entry(last)
        bitmap = table.bitmap(last)
        sc = subclusterIndex(guestOffset + bytes - 1)
        let cowEndTo: UInt64
        switch (keepOld, subclusterType(entry: entry, bitmap: bitmap, index: sc)) {
        case (false, .compressed):
            cowEndTo = roundUp(cowEndFrom, clusterSize)
        case (false, .normal), (false, .zeroAllocated), (false, .unallocatedAllocated):
            // Trailing subclusters that are not allocated need no copy.
            let allocated = UInt32(truncatingIfNeeded: bitmap)
            let skipped = extendedL2 ? min(Int(subclustersPerCluster) - sc - 1, allocated.leadingZeroBitCount) : 0
            cowEndTo = roundUp(cowEndFrom, clusterSize) - (UInt64(skipped) << subclusterBits)
        case (false, .zeroPlain), (false, .unallocatedPlain), (true, .zeroAllocated), (true, .unallocatedAllocated):
            cowEndTo = roundUp(cowEndFrom, subclusterSize)
        case (true, .normal):
            cowEndTo = cowEndFrom
        default:
            throw Qcow2Error.corruptMetadata("unexpected cluster entry \(hex(entry)) at guest offset \(hex(guestOffset))")
        }

        let allocation = ClusterAllocation(
            guestOffset: startOfCluster(guestOffset), hostOffset: hostCluster, clusterCount: count,
            keepsOldClusters: keepOld,
            cowStart: (cowStartFrom, cowStartTo - cowStartFrom), cowEnd: (cowEndFrom, cowEndTo - cowEndFrom))
        inFlight.append(allocation)
        return allocation
    }

    /// qcow2_alloc_cluster_abort: the write failed; new clusters are freed.
    func abort(_ allocation: ClusterAllocation, lock: borrowing HeldMetadataLock) {
        if !allocation.keepsOldClusters {
            freeClusters(
                offset: allocation.hostOffset, length: UInt64(allocation.clusterCount) << clusterBits, type: .never)
        }
        finish(allocation, lock: lock)
    }

    /// Takes an allocation off the in-flight list and wakes waiting writers.
    func finish(_ allocation: ClusterAllocation, lock: borrowing HeldMetadataLock) {
        inFlight.removeAll { $0 === allocation }
        lock.broadcast()
    }
}
