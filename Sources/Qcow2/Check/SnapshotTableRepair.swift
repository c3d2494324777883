// Writing the snapshot table again after `-r all` dropped or completed
// entries (qcow2_check_fix_snapshot_table, qcow2_write_snapshots): the new
// table goes to freshly allocated clusters, is flushed, the header is
// switched to it with one write, and only then is the old table freed.
// Allocation is QEMU's own (RefcountAllocator, shared with image creation),
// working on the refcounts the check has just made right.

extension Qcow2Checker {
    func fixSnapshotTable(repair: CheckRepair, result: inout CheckResult, diagnostics: CheckDiagnostics) throws {
        guard result.corruptions != 0, repair.contains(.errors) else { return }
        do {
            try writeSnapshotTable(diagnostics: diagnostics)
        } catch let failure as CheckFailure {
            result.checkErrors += 1
            diagnostics(CheckMessage("ERROR failed to update snapshot table: \(failure)"))
            throw failure
        }
        result.corruptionsFixed += result.corruptions
        result.corruptions = 0
    }

    private func writeSnapshotTable(diagnostics: CheckDiagnostics) throws {
        let (entries, size) = snapshotTable.encodedEntries(virtualSize: header.size & ~511)
        guard size <= Qcow2Limits.maxSnapshotTableBytes else { throw CheckFailure(errno: CheckErrno.tooBig) }
        let newOffset = try allocateClusters(size)

        do {
            // bdrv_flush: the new clusters' refcounts are on disk first.
            try flushRefcountBlocks()
            try flush()
            try checkBeforeWriting(offset: newOffset, size: size, diagnostics: diagnostics)
            // Only the entries are written: padding between them keeps
            // whatever the clusters held, as in QEMU.
            for (start, bytes) in entries {
                try write(bytes, at: newOffset + start)
            }
            try flushRefcountBlocks()
            try flush()
            let pointer = HeaderFieldUpdate.snapshotTableLocation(
                offset: newOffset, count: UInt32(snapshotTable.entries.count))
            try write(pointer.bytes, at: pointer.offset)
            try flush()
        } catch {
            if newOffset > 0 { try? decreaseRefcounts(offset: newOffset, size: size) }
            throw error
        }
        let (oldOffset, oldSize) = (snapshotTable.offset, snapshotTable.byteLength)
        snapshotTable.offset = newOffset
        snapshotTable.byteLength = size
        do {
            try decreaseRefcounts(offset: oldOffset, size: oldSize)
        } catch let failure as CheckFailure {
            diagnostics(CheckMessage("qcow2_free_clusters failed: \(failure)"))
        }
    }

    /// Allocates clusters for `size` bytes (qcow2_alloc_clusters, through
    /// the check's allocator); the caller flushes.
    private func allocateClusters(_ size: UInt64) throws -> UInt64 {
        try withRefcounts(diagnostics: reporter) { try $0.allocateClusters(size) }
    }

    /// Frees the clusters of a byte range (qcow2_free_clusters, through the
    /// check's allocator): all or nothing; clusters whose refcount drops to
    /// zero are discarded once every refcount is updated. (QEMU frees the
    /// old table as a snapshot free, a new one it could not use as an
    /// "always" one: both pass through to the file alike.)
    func decreaseRefcounts(offset: UInt64, size: UInt64) throws {
        try withRefcounts(diagnostics: reporter) { try $0.freeClusters(offset: offset, length: size, type: .snapshot) }
    }
}
