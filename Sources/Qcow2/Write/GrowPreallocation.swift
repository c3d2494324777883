// The preallocation modes of QEMU 7.2's qcow2_co_truncate, for the guest range
// a grow adds.
//
// metadata (preallocate_co): the range is mapped as a write maps it
// (ClusterAllocation.swift), in chunks of at most INT_MAX bytes: each L2
// table is allocated on first use and data clusters follow it contiguously
// for as long as they can, so that a new image reads L2, data, L2, data...
// The allocations are linked without guest data (what the last cluster holds
// past the range is copied on write: zeroes in a new image). The file is then
// extended to the end of the last data cluster.
//
// falloc/full: new refcount structures sized for everything to come are
// placed after the used part of the file (the old refcount table is freed),
// all data clusters are allocated right after them and the file is grown
// over them with fallocate() or zeroes; the L2 tables are allocated last,
// first into the freed clusters.
//
// Preallocated clusters keep their extended L2 bitmaps clear: their
// subclusters still read from the backing file.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    // MARK: metadata

    func preallocateMetadata(from oldSize: UInt64, to newSize: UInt64, lock: borrowing HeldMetadataLock) throws {
        var offset = oldSize
        var remaining = newSize - oldSize
        var hostOffset: UInt64 = 0
        var bytes: UInt64 = 0
        let chunkLimit = UInt64(Int32.max) & ~(clusterSize - 1)
        while remaining > 0 {
            bytes = min(remaining, chunkLimit)
            // Waiting for writes in flight over the range, as QEMU does.
            guard case let .mapped(host, mapped, allocations) = try mapForWrite(offset: offset, bytes: bytes, mayWait: true, lock: lock) else {
                throw Qcow2Error.writeFailed(errno: EIO, reason: "Could not map guest offset \(offset) for preallocation")
            }
            hostOffset = host
            bytes = mapped
            // QEMU keeps its allocations newest first, and links them so.
            var pending = Array(allocations.reversed())
            defer { for allocation in pending { abort(allocation, lock: lock) } }
            while let allocation = pending.first {
                allocation.isPreallocation = true
                try link(allocation, lock: lock)
                pending.removeFirst()
                finish(allocation, lock: lock)
            }
            remaining -= bytes
            offset += bytes
        }
        let end = hostOffset + bytes
        if end > (try file.size()) { try truncateFile(to: end) }
    }

    // MARK: falloc, full

    func preallocateClusters(
        from oldSize: UInt64, to newSize: UInt64, mode: Preallocation, lock: borrowing HeldMetadataLock
    ) throws {
        let fileSize = try file.size()
        let oldFileSize = (try allocator.lastUsedCluster(fileSize: fileSize) + 1) * clusterSize

        var dataClusters = (roundUp(newSize, clusterSize) - startOfCluster(oldSize)) >> clusterBits
        // An overestimate, so that no refcount block is needed later for
        // the L2 tables (one more for a partial first or last table).
        let l2TableCount = divideRoundingUp(dataClusters, l2Entries) + 1
        let allocationStart = try allocator.createRefcountArea(
            at: oldFileSize, additionalClusters: dataClusters + l2TableCount, exactSize: true,
            newBlockIndex: 0, newBlockOffset: 0)
        let allocated = try allocator.allocateClusters(at: allocationStart, count: dataClusters)
        guard allocated == dataClusters else { throw Qcow2Error.corruptMetadata("data area is not free") }

        do {
            try preallocateFile(to: allocationStart + dataClusters * clusterSize, mode: mode)
        } catch let Qcow2Error.creation(error) {
            // QEMU lets this free fail silently (the clusters leak).
            freeClusters(offset: allocationStart, length: dataClusters * clusterSize, type: .other)
            if error.isFileTooLarge { throw FileTooLarge() }
            throw Qcow2Error.creation(.couldNotResize(reason: "Failed to resize underlying file: " + error.description))
        }

        var guest = startOfCluster(oldSize)
        var host = allocationStart
        // The old last cluster's guest data, when it was partial, is copied.
        var copied = offsetInCluster(oldSize)
        while dataClusters > 0 {
            let count = min(dataClusters, l2Entries - UInt64(l2Index(guest)))
            let allocation = ClusterAllocation(
                guestOffset: guest, hostOffset: host, clusterCount: Int(count), keepsOldClusters: false,
                cowStart: (0, copied), cowEnd: (count << clusterBits, 0))
            allocation.isPreallocation = true
            try link(allocation, lock: lock)
            guest += count << clusterBits
            host += count << clusterBits
            dataClusters -= count
            copied = 0
        }
    }
}
