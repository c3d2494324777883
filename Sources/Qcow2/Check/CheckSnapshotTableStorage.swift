// The check's side of replacing the snapshot table (the steps are
// SnapshotTable.replace's, Snapshots/SnapshotTableReplacement.swift): its own
// allocator over the refcounts it has just made right (the allocation is in
// SnapshotTableRepair.swift), its overlap check, and its reports.

extension Qcow2Checker: SnapshotTableStorage {
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

    func freeSnapshotTableClusters(offset: UInt64, size: UInt64, replaced: Bool) {
        do {
            try decreaseRefcounts(offset: offset, size: size)
        } catch let failure as CheckFailure where replaced {
            reporter(CheckMessage("qcow2_free_clusters failed: \(failure)"))
        } catch {}
    }
}
