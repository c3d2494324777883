// Writing the snapshot table again after `-r all` dropped or completed
// entries (qcow2_check_fix_snapshot_table): through the one replacement of
// the table (SnapshotTable.replace, shared with snapshot create and delete).
// Allocation is QEMU's own (RefcountAllocator, shared with image creation),
// working on the refcounts the check has just made right.

extension Qcow2Checker {
    func fixSnapshotTable(repair: CheckRepair, result: inout CheckResult, diagnostics: CheckDiagnostics) throws {
        guard result.corruptions != 0, repair.contains(.errors) else { return }
        do {
            snapshotTable = try snapshotTable.replace(
                snapshotTable, virtualSize: header.size & ~511, in: self, tooBig: CheckFailure(errno: CheckErrno.tooBig))
        } catch let failure as CheckFailure {
            result.checkErrors += 1
            diagnostics(CheckMessage("ERROR failed to update snapshot table: \(failure)"))
            throw failure
        }
        result.corruptionsFixed += result.corruptions
        result.corruptions = 0
    }
}

/// The check's side of replacing the snapshot table (the steps are
/// SnapshotTable.replace's): its own allocator over the refcounts it has
/// just made right, and its reports.
extension Qcow2Checker: SnapshotTableStorage {
    func allocateSnapshotTableClusters(_ size: UInt64) throws -> UInt64 { try allocateClusters(size) }

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

extension Qcow2Checker {

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
