// Replacing the snapshot table (QEMU's qcow2_write_snapshots), the one
// implementation of its steps for both callers: the write path (snapshot
// create and delete) and the check (`-r all` rewriting a repaired table).
// The table moves the way every table moves:
//  1. new clusters are allocated for the whole table, and everything is
//     flushed (their refcounts are on disk);
//  2. the clusters are checked against other metadata (the header does not
//     name them yet: nothing may be there), the entries are written (only
//     the entries: padding between them keeps what the clusters held, as in
//     QEMU) and everything is flushed again;
//  3. the header is switched to the new table with one synced write of
//     nb_snapshots and snapshots_offset;
//  4. the old table's clusters are freed.
// A crash before step 3 leaks the new clusters; after it, the old ones.

/// What replacing the snapshot table needs from the one holding the image.
protocol SnapshotTableStorage {
    /// Allocates clusters for `size` bytes (qcow2_alloc_clusters; 0 bytes
    /// give the offset the free search stands at, and no clusters).
    func allocateSnapshotTableClusters(_ size: UInt64) throws -> UInt64
    /// bdrv_flush: cached metadata written, then the file synced.
    func flushForSnapshotTable() throws
    /// The overlap check before the new table is written.
    func checkSnapshotTableOverlap(offset: UInt64, size: UInt64) throws
    func writeSnapshotTableBytes(_ bytes: [UInt8], at offset: UInt64) throws
    /// nb_snapshots and snapshots_offset, in one synced write.
    func writeSnapshotTablePointer(offset: UInt64, count: UInt32) throws
    /// qcow2_free_clusters of a table: the new one after a failure, or the
    /// old one once replaced (failures are reported, not thrown).
    func freeSnapshotTableClusters(offset: UInt64, size: UInt64, replaced: Bool)
}

extension SnapshotTable {
    /// Writes this table's entries to new clusters of `storage` and makes
    /// the header name them, freeing `old`; returns the table as it now
    /// lies in the file. `tooBig` is thrown, before anything is written,
    /// for a table past QEMU's 64 MiB limit.
    func replace(_ old: SnapshotTable, virtualSize: UInt64, in storage: some SnapshotTableStorage,
                 tooBig: @autoclosure () -> Error) throws -> SnapshotTable {
        let (encoded, size) = encodedEntries(virtualSize: virtualSize)
        guard size <= Qcow2Limits.maxSnapshotTableBytes else { throw tooBig() }
        let newOffset = try storage.allocateSnapshotTableClusters(size)
        do {
            try storage.flushForSnapshotTable()
            try storage.checkSnapshotTableOverlap(offset: newOffset, size: size)
            for (start, bytes) in encoded { try storage.writeSnapshotTableBytes(bytes, at: newOffset + start) }
            try storage.flushForSnapshotTable()
            try storage.writeSnapshotTablePointer(offset: newOffset, count: UInt32(entries.count))
        } catch {
            if newOffset > 0 { storage.freeSnapshotTableClusters(offset: newOffset, size: size, replaced: false) }
            throw error
        }
        storage.freeSnapshotTableClusters(offset: old.offset, size: old.byteLength, replaced: true)
        var written = self
        written.offset = newOffset
        written.byteLength = size
        return written
    }
}
