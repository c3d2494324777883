// Replacing the snapshot table of an open image (QEMU's qcow2_write_snapshots),
// the way every table moves:
//  1. new clusters are allocated for the whole table, and the caches are
//     flushed (their refcounts are on disk);
//  2. the entries are written there (only the entries: padding between them
//     keeps what the clusters held, as in QEMU) and flushed;
//  3. the header is switched to the new table with one synced write of
//     nb_snapshots and snapshots_offset;
//  4. the old table's clusters are freed.
// A crash before step 3 leaks the new clusters; after it, the old ones.

extension Qcow2Writer {
    /// Writes `table` to new clusters and makes it the image's snapshot table.
    /// On failure the image keeps its old table (and `snapshots`).
    func writeSnapshotTableLocked(_ table: SnapshotTable) throws {
        let (entries, size) = table.encodedEntries(virtualSize: imageSize)
        guard size <= Qcow2Limits.maxSnapshotTableBytes else { throw FileTooLarge() }
        // No snapshots: no clusters, and the header names where the free
        // search stands (QEMU's qcow2_alloc_clusters of 0 bytes).
        let newOffset = try allocator.allocateClusters(size)
        do {
            try writeCachesLocked()
            try file.flush()
            // The header does not name these clusters yet: nothing else may be there.
            try checkOverlapLocked(offset: newOffset, length: size)
            for (start, bytes) in entries { try file.write(bytes, at: newOffset + start) }
            try writeCachesLocked()
            try file.flush()
            try writeSnapshotTableLocationLocked(offset: newOffset, count: UInt32(table.entries.count))
        } catch {
            if newOffset > 0 { freeClustersLocked(offset: newOffset, length: size, type: .always) }
            throw error
        }
        let old = snapshots
        snapshots = table
        snapshots.offset = newOffset
        snapshots.byteLength = size
        rebuildOverlapIndex()
        freeClustersLocked(offset: old.offset, length: old.byteLength, type: .snapshot)
    }
}
