// Shrinking an image's virtual size: QEMU 7.2's qcow2_co_truncate for a size
// below the current one, with its last step first.
//  0. the size field is rewritten and synced. QEMU does this last, so a
//     crash while it discards leaves the old size over a cropped part that
//     reads neither as before nor as after; first, every crash state reads
//     as after, and what follows only frees what the guest no longer sees.
//     The file ends byte-identical to QEMU's either way;
//  1. every cluster from the new end (rounded up to a whole cluster) to the
//     old end is discarded for good: L2 entries cleared, references
//     dropped, freed clusters punched out of the file (qcow2_cluster_discard,
//     full discard of the "always" kind);
//  2. the L1 entries past the new end are zeroed in the file (flushed), then
//     the L2 tables they named are freed; the table keeps its size and
//     place (qcow2_shrink_l1_table);
//  3. refcount blocks that count nothing but themselves leave the refcount
//     table (RefcountTableShrink.swift);
//  4. the file is cut after the last cluster in use (a failure there is
//     only a warning).
// Crash safety: the part below the new size is never touched; each step
// keeps QEMU's ordering of references before refcounts, so a crash leaves
// leaks at worst (L1 entries and L2 tables past the new end are allowed).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    func shrink(to newSize: UInt64) throws {
        let oldSize = imageSize
        precondition(newSize < oldSize)
        let cropStart = roundUp(newSize, clusterSize)
        try failing("Failed to update the image size") { try writeSize(newSize) }
        imageSize = newSize
        if cropStart < oldSize {
            try failing("Failed to discard cropped clusters") {
                try discardClusters(offset: cropStart, length: oldSize - cropStart, type: .always, fullDiscard: true)
            }
        }
        try failing("Failed to reduce the number of L2 tables") {
            try shrinkL1Table(toEntries: Int(divideRoundingUp(newSize, clusterSize << l2Bits)))
        }
        try failing("Failed to discard unused refblocks") { try allocator.dropUnusedRefcountBlocks() }

        let fileSize = try failing("Failed to inquire current file length") { try file.size() }
        let lastCluster = try failing("Failed to find the last cluster") { try allocator.lastUsedCluster(fileSize: fileSize) }
        let end = (lastCluster + 1) * clusterSize
        if end < fileSize {
            do {
                try file.truncate(to: end)
            } catch {
                image.report(Qcow2Diagnostic(
                    .errorReport, "warning: Failed to truncate the tail of the image: \(Qcow2Error.reason(of: error))"))
            }
        }
    }

    /// qcow2_shrink_l1_table: the entries from `count` on are zeroed on disk
    /// before the tables they name are freed, last entry first.
    private func shrinkL1Table(toEntries count: Int) throws {
        let oldCount = map.l1.count
        guard count < oldCount else { return }
        do {
            let zeroes = [UInt8](repeating: 0, count: (oldCount - count) * 8)
            try file.write(zeroes, at: header.l1TableOffset + UInt64(count) * 8)
            try file.flush()
        } catch {
            // The table on disk may be half zeroed: forget the entries rather
            // than keep using tables it may no longer name.
            for i in count..<oldCount { setL1Entry(i, 0) }
            throw error
        }
        for i in stride(from: oldCount - 1, through: count, by: -1) {
            let table = map.l1[i] & Qcow2EntryMask.offset
            guard table != 0 else { continue }
            freeClusters(offset: table, length: clusterSize, type: .always)
            setL1Entry(i, 0)
        }
    }
}
