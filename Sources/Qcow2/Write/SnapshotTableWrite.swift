// The write path's side of replacing the snapshot table (the steps are
// SnapshotTable.replace's, Snapshots/SnapshotTableReplacement.swift): QEMU's
// allocator, caches and overlap index, and the header field update.

extension Qcow2Writer: SnapshotTableStorage {
    /// Makes `table` the image's snapshot table, written to new clusters.
    /// On failure the image keeps its old table (and `snapshots`).
    func writeSnapshotTable(_ table: SnapshotTable) throws {
        snapshots = try table.replace(snapshots, virtualSize: imageSize, in: self, tooBig: FileTooLarge())
        rebuildOverlapIndex()
    }

    func allocateSnapshotTableClusters(_ size: UInt64) throws -> UInt64 { try allocator.allocateClusters(size) }

    func flushForSnapshotTable() throws {
        try writeCaches()
        try file.flush()
    }

    func checkSnapshotTableOverlap(offset: UInt64, size: UInt64) throws {
        try checkOverlap(offset: offset, length: size)
    }

    func writeSnapshotTableBytes(_ bytes: [UInt8], at offset: UInt64) throws { try file.write(bytes, at: offset) }

    func writeSnapshotTablePointer(offset: UInt64, count: UInt32) throws {
        try writeSnapshotTableLocation(offset: offset, count: count)
    }

    func freeSnapshotTableClusters(offset: UInt64, size: UInt64, replaced: Bool) {
        freeClusters(offset: offset, length: size, type: replaced ? .snapshot : .always)
    }
}
