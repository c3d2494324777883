// Writing the snapshot table again after `-r all` dropped or completed
// entries (qcow2_check_fix_snapshot_table): through the one replacement of
// the table (SnapshotTable.replace, shared with snapshot create and delete).
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
        snapshotTable = try snapshotTable.replace(
            snapshotTable, virtualSize: header.size & ~511, in: self, tooBig: CheckFailure(errno: CheckErrno.tooBig))
    }

    /// SnapshotTableStorage's allocation (the rest of the check's side is in
    /// CheckSnapshotTableStorage.swift).
    func allocateSnapshotTableClusters(_ size: UInt64) throws -> UInt64 { try allocateClusters(size) }

    /// Allocates clusters for `size` bytes as QEMU's qcow2_alloc_clusters
    /// does, from the refcounts on disk; the refcount blocks are written
    /// when it returns.
    private func allocateClusters(_ size: UInt64) throws -> UInt64 {
        try emptyRefcountBlockCache()
        let allocator = RefcountAllocator(file: file, clusterBits: UInt32(geometry.clusterBits), width: geometry.width,
                                          tableOffset: refcountTableOffset, table: refcountTable)
        let offset: UInt64
        do {
            offset = try allocator.allocateClusters(size)
            try allocator.blocks.flush()
        } catch let failure as CheckFailure {
            throw failure
        } catch let Qcow2Error.io(_, code) {
            throw CheckFailure(errno: code)
        } catch is FileTooLarge {
            throw CheckFailure(errno: CheckErrno.tooBig)
        } catch {
            throw CheckFailure(errno: CheckErrno.io)
        }
        if allocator.tableOffset != refcountTableOffset {
            // The allocator moved the refcount table: the header follows.
            let pointer = HeaderFieldUpdate.refcountTableLocation(offset: allocator.tableOffset, clusters: UInt32(truncatingIfNeeded: allocator.tableClusters))
            try flush()
            try write(pointer.bytes, at: pointer.offset)
            try flush()
        }
        installRefcountTable(allocator.table, at: allocator.tableOffset)
        return offset
    }

    /// Frees the clusters of a byte range (qcow2_free_clusters): all or
    /// nothing; clusters whose refcount drops to zero are discarded once
    /// every refcount is updated.
    func decreaseRefcounts(offset: UInt64, size: UInt64) throws {
        guard size > 0 else { return }
        let first = Int64(geometry.startOfCluster(offset) >> geometry.clusterBits)
        let last = Int64(geometry.startOfCluster(offset &+ size &- 1) >> geometry.clusterBits)
        guard first <= last else { return }
        var done: [Int64] = []
        var freed: [Int64] = []
        do {
            for cluster in first...last {
                if try changeRefcount(ofCluster: cluster, by: 1, decrease: true, discard: false, diagnostics: reporter) == 0 {
                    freed.append(cluster)
                }
                done.append(cluster)
            }
        } catch {
            for cluster in done.reversed() {
                _ = try? changeRefcount(ofCluster: cluster, by: 1, decrease: false, discard: false, diagnostics: reporter)
            }
            throw error
        }
        for cluster in freed {
            try? file.punchHole(offset: UInt64(cluster) << geometry.clusterBits, length: geometry.clusterSize)
        }
    }
}
