// The preallocation modes of QEMU 7.2's qcow2_co_truncate on an empty image.
//
// metadata (preallocate_co): the guest range is mapped in chunks of at most
// INT_MAX bytes; within a chunk each L2 table is allocated on first use and
// data clusters are allocated contiguously after it for as long as they can
// follow the previous ones, so the file reads L2, data, L2, data... The file
// is then extended to the end of the last data cluster.
//
// falloc/full: new refcount structures sized for everything to come are
// placed after the used part of the file (the old refcount table is freed),
// all data clusters are allocated right after them and the file is grown over
// them with fallocate() or zeroes; the L2 tables are allocated last, first
// into the freed clusters.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Builder {
    // MARK: metadata

    func preallocateMetadata(from start: UInt64, to newLength: UInt64) throws {
        var offset = start
        var remaining = newLength - start
        var hostOffset: UInt64 = 0
        var chunk: UInt64 = 0
        let chunkLimit = UInt64(Int32.max) & ~(clusterSize - 1)
        while remaining > 0 {
            chunk = min(remaining, chunkLimit)
            var mappings: [Mapping] = []
            hostOffset = try allocateHostRange(guestOffset: offset, bytes: &chunk, mappings: &mappings)
            // QEMU keeps its list newest first.
            for mapping in mappings.reversed() { try link(mapping) }
            remaining -= chunk
            offset += chunk
        }
        let end = hostOffset + chunk
        if end > (try file.size()) { try truncateFile(to: end) }
    }

    /// qcow2_alloc_host_offset: maps as much of `bytes` at `guestOffset` as
    /// can be contiguous in the file; shortens `bytes` to that and returns the
    /// host offset of its start.
    private func allocateHostRange(guestOffset: UInt64, bytes: inout UInt64, mappings: inout [Mapping]) throws -> UInt64 {
        var start = guestOffset
        var remaining = bytes
        var clusterOffset: UInt64?
        var hostOffset: UInt64?
        var current: UInt64 = 0
        while true {
            if hostOffset == nil, let c = clusterOffset { hostOffset = c }
            start += current
            remaining -= current
            if let c = clusterOffset { clusterOffset = c + current }
            if remaining == 0 { break }
            current = remaining
            // handle_copied: nothing here is mapped yet, but looking
            // allocates the L2 table.
            let table = try l2Table(for: start)
            let entry = table.word(Int(l2Index(start) * l2EntrySize / 8))
            guard entry == 0 else { throw Qcow2Error.corruptMetadata("preallocating over a mapped cluster") }
            // handle_alloc
            if try !allocateClusters(guestOffset: start, hostOffset: &clusterOffset, bytes: &current, mappings: &mappings) {
                break
            }
        }
        bytes -= remaining
        guard let host = hostOffset else { throw Qcow2Error.corruptMetadata("no cluster could be allocated") }
        return host
    }

    /// handle_alloc: allocates data clusters for `bytes` at `guestOffset`, up
    /// to the end of its L2 table, contiguous with `hostOffset` when given.
    /// Returns false (and `bytes` 0) when nothing could follow `hostOffset`.
    private func allocateClusters(
        guestOffset: UInt64, hostOffset: inout UInt64?, bytes: inout UInt64, mappings: inout [Mapping]
    ) throws -> Bool {
        let inCluster = guestOffset & (clusterSize - 1)
        var count = divideRoundingUp(inCluster + bytes, clusterSize)
        count = min(count, l2Entries - l2Index(guestOffset))
        count = min(count, Qcow2Limits.maxRequestBytes >> clusterBits)
        _ = try l2Table(for: guestOffset)

        let allocOffset: UInt64
        if let host = hostOffset {
            allocOffset = host & ~(clusterSize - 1)
            count = try allocator.allocateClusters(at: allocOffset, count: count)
        } else {
            allocOffset = try allocator.allocateClusters(count * clusterSize)
        }
        if count == 0 {
            bytes = 0
            return false
        }

        let mapped = min(bytes + inCluster, count << clusterBits)
        hostOffset = allocOffset + inCluster
        bytes = min(bytes, mapped - inCluster)

        // calculate_l2_meta: the guest data ends inside the last cluster; the
        // rest of its (sub)cluster is copied on write, i.e. written as zeroes.
        let clusterStart = guestOffset & ~(clusterSize - 1)
        let tailFrom = guestOffset + bytes
        let tailTo = alignUp(tailFrom, subclusterSize) ?? tailFrom
        mappings.append(Mapping(
            guestOffset: clusterStart, hostOffset: allocOffset,
            clusters: divideRoundingUp(tailTo - clusterStart, clusterSize),
            tailOffset: tailFrom - clusterStart, tailBytes: tailTo - tailFrom))
        return true
    }

    // MARK: falloc, full

    func preallocateData(size: UInt64) throws {
        let fileSize = try file.size()
        let oldFileSize = (try allocator.lastUsedCluster(fileSize: fileSize) + 1) * clusterSize

        var dataClusters = divideRoundingUp(size, clusterSize)
        // An overestimate, so that no refcount block is needed later for
        // the L2 tables (one more for a partial first or last table).
        let l2TableCount = divideRoundingUp(dataClusters, l2Entries) + 1
        let allocationStart = try allocator.createRefcountArea(
            at: oldFileSize, additionalClusters: dataClusters + l2TableCount, exactSize: true,
            newBlockIndex: 0, newBlockOffset: 0)
        let allocated = try allocator.allocateClusters(at: allocationStart, count: dataClusters)
        guard allocated == dataClusters else { throw Qcow2Error.corruptMetadata("data area is not free") }

        do {
            try preallocateFile(to: allocationStart + dataClusters * clusterSize, mode: options.preallocation)
        } catch let error as Qcow2CreateError {
            if error.isFileTooLarge { throw FileTooLarge() }
            throw Qcow2CreateError.couldNotResize(reason: "Failed to resize underlying file: " + error.description)
        }

        var guest: UInt64 = 0
        var host = allocationStart
        while dataClusters > 0 {
            let count = min(dataClusters, l2Entries - l2Index(guest))
            try link(Mapping(guestOffset: guest, hostOffset: host, clusters: count, tailOffset: count << clusterBits, tailBytes: 0))
            guest += count * clusterSize
            host += count * clusterSize
            dataClusters -= count
        }
    }

    // MARK: The host file

    /// Grows the file without preallocation.
    func truncateFile(to length: UInt64) throws {
        try RawPreallocation.truncate(file, to: length)
    }

    /// Grows the file to `length` with QEMU's file-posix preallocation:
    /// fallocate() the new part, or write it with zeroes and sync.
    func preallocateFile(to length: UInt64, mode: Preallocation) throws {
        try RawPreallocation.grow(file: file, to: length, mode: mode)
    }
}
