// Reading an internal snapshot in place of the current state, as QEMU's
// bdrv_snapshot_load_tmp does for `qemu-img convert -l` and `measure -l`
// (qcow2_snapshot_load_tmp): on an image open read-only, the snapshot's L1
// table becomes the one guest reads map through. Only the L1 table changes:
// the virtual size stays the image's (a guest offset past the snapshot's L1
// table reads as unallocated), and the backing file stays attached.

extension Qcow2Image {
    /// Switches reads to the snapshot with this ID and/or name (both given:
    /// both must match). Throws `SnapshotError.notFound`, `Qcow2Error.readOnly`
    /// for an image open for writing (QEMU: "Device is not readonly"), or the
    /// table's read errors.
    package func loadSnapshotTemporarily(id: String?, name: String?) throws {
        guard !isWritable else { throw Qcow2Error.readOnly }
        let table = try SnapshotTable.read(from: self)
        guard let index = table.index(id: id, name: name) else { throw SnapshotError.notFound }
        try switchL1(to: table.entries[index])
    }

    /// The same, by ID or else by name (bdrv_snapshot_load_tmp_by_id_or_name).
    package func loadSnapshotTemporarily(idOrName: String) throws {
        guard !isWritable else { throw Qcow2Error.readOnly }
        let table = try SnapshotTable.read(from: self)
        guard let index = table.index(idOrName: idOrName) else { throw SnapshotError.notFound }
        try switchL1(to: table.entries[index])
    }

    private func switchL1(to snapshot: SnapshotEntry) throws {
        // qcow2_validate_table, as the writer checks before using one.
        try HeaderValidation.validateTable(
            "Snapshot L1 table", offset: snapshot.l1TableOffset, entries: UInt64(snapshot.l1Size), entrySize: 8,
            maxBytes: Qcow2Limits.maxL1TableBytes, clusterSize: header.clusterSize, fileSize: 0, qemuChecksOnly: true)
        let l1 = try ClusterTables.readL1(file, offset: snapshot.l1TableOffset, count: snapshot.l1Size)
        clusterMap.lock.withLock { $0.tables.l1 = l1 }
    }
}
