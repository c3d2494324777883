// The check's side of replacing the snapshot table (the steps are
// SnapshotTable.replace's, Snapshots/SnapshotTableReplacement.swift): QEMU's
// allocator over the refcounts the check has just made right (the check's
// RefcountAllocator, shared with image creation), its overlap check, and its
// reports.

extension Qcow2Checker: SnapshotTableStorage {
    func allocateSnapshotTableClusters(_ size: UInt64) throws -> UInt64 {
        try withRefcounts(diagnostics: reporter) { try $0.allocateClusters(size) }
    }

    func flushForSnapshotTable() throws {
        try flushRefcountBlocks()
        try flush()
    }

    func checkSnapshotTableOverlap(offset: UInt64, size: UInt64) throws {
        try checkBeforeWriting(offset: offset, size: size, diagnostics: reporter)
    }

    func writeSnapshotTableBytes(_ bytes: [UInt8], at offset: UInt64) throws { try write(bytes, at: offset) }

    func writeSnapshotTablePointer(offset: UInt64, count: UInt32) throws {
        let pointer = HeaderFieldUpdate.snapshotTableLocation(offset: offset, count: count)
        try write(pointer.bytes, at: pointer.offset)
        try flush()
    }

    /// qcow2_free_clusters: all or nothing; clusters whose refcount drops to
    /// zero are discarded once every refcount is updated. (QEMU frees the
    /// old table as a snapshot free, a new one it could not use as an
    /// "always" one: both pass through to the file alike.)
    func freeSnapshotTableClusters(offset: UInt64, size: UInt64, replaced: Bool) {
        do {
            try withRefcounts(diagnostics: reporter) { try $0.freeClusters(offset: offset, length: size, type: .snapshot) }
        } catch let failure as CheckFailure where replaced {
            reporter(CheckMessage("qcow2_free_clusters failed: \(failure)"))
        } catch {}
    }
}
