// The refcounts the image itself records, read and changed through the one
// refcount allocator (Metadata/RefcountAllocator.swift: qcow2_get_refcount,
// update_refcount, qcow2_alloc_clusters, qcow2_free_clusters), as QEMU's
// check uses its driver's own. The check's allocator keeps QEMU's refcount
// block cache at its default size (four blocks, least recently used
// evicted): changes reach the disk when a block is evicted or the cache is
// flushed, and a run that ends with the image marked corrupt loses what was
// not written by then, exactly as QEMU does. Nothing defers discards here:
// a cluster whose refcount drops to zero is punched out of the file when
// that one update ends, as QEMU's check does.
//
// The allocator throws the codec's errors (Qcow2Error, FileTooLarge), which
// the write path reports in its own words; the check speaks errno (QEMU's
// -errno returns, printed as strerror), so every call goes through
// `withRefcounts`, which maps them in one place.

extension Qcow2Checker {
    /// The allocator the check reads and changes refcounts with: QEMU's
    /// cache size, the check's overlap check on write-back, the header
    /// following a refcount table that moves.
    static func makeAllocator(file: BlockFile, header: Qcow2Header, geometry: CheckGeometry,
                              table: [UInt64]) -> RefcountAllocator {
        RefcountAllocator(file: file, clusterBits: header.clusterBits, width: geometry.width,
                          tableOffset: header.refcountTableOffset, table: table, cacheCapacity: 4)
    }

    /// The allocator's hooks into this checker (set once `self` exists).
    func watchAllocator() {
        // Where QEMU syncs inside the allocator (a new refcount block before
        // the table names it, bdrv_pwrite_sync of table entries), so does
        // the check, as the write path does.
        allocator.syncsWrites = true
        allocator.blocks.syncsOnFlush = true
        allocator.blocks.checkBeforeRead = { [unowned self] offset in
            // Reads QEMU cannot address fail with EIO.
            guard offset <= UInt64(Int64.max) - geometry.clusterSize else { throw CheckFailure(errno: CheckErrno.io) }
        }
        allocator.blocks.checkBeforeWrite = { [unowned self] offset, length in
            // A write-back onto other metadata is refused (as corruption).
            try checkBeforeWriting(offset: offset, size: UInt64(length), ignoring: [.refcountBlock], diagnostics: reporter)
            knownLength = nil
        }
        allocator.tableChanged = { [unowned self] _ in
            overlapIndex = nil
            knownLength = nil
        }
        allocator.tableReplaced = { [unowned self] offset, clusters in
            // A new refcount table, written: the header names it (synced).
            let pointer = HeaderFieldUpdate.refcountTableLocation(offset: offset, clusters: UInt32(truncatingIfNeeded: clusters))
            try write(pointer.bytes, at: pointer.offset)
            try flush()
        }
    }

    /// Runs a refcount operation, its failures as the check's: broken
    /// refcount metadata is a corruption event (reported once) and EIO; a
    /// file error keeps its errno; a refcount out of range is EINVAL and
    /// an allocation past what offsets can hold EFBIG.
    func withRefcounts<T>(diagnostics: CheckDiagnostics, _ body: (RefcountAllocator) throws -> T) throws -> T {
        do {
            return try body(allocator)
        } catch let failure as CheckFailure {
            throw failure
        } catch let Qcow2Error.corruptMetadata(message) {
            signalCorruption(message, diagnostics: diagnostics)
            throw CheckFailure(errno: CheckErrno.io)
        } catch let Qcow2Error.io(_, code), let Qcow2Error.writeFailed(code, _) {
            throw CheckFailure(errno: code)
        } catch is FileTooLarge {
            throw CheckFailure(errno: CheckErrno.tooBig)
        } catch {
            throw CheckFailure(errno: CheckErrno.io)
        }
    }

    /// The refcount of host cluster `cluster` as recorded on disk.
    func refcount(ofCluster cluster: Int64, diagnostics: CheckDiagnostics) throws -> UInt64 {
        try withRefcounts(diagnostics: diagnostics) { try $0.refcount(ofCluster: UInt64(cluster)) }
    }

    /// Adds `addend` to (or takes it from) the refcount of one cluster
    /// (update_refcount as compare_refcounts uses it). A refcount that drops
    /// to zero has its cluster discarded: QEMU always passes such discards
    /// to the file, which then reads as zeroes there.
    func changeRefcount(ofCluster cluster: Int64, by addend: UInt64, decrease: Bool,
                        diagnostics: CheckDiagnostics) throws {
        try withRefcounts(diagnostics: diagnostics) {
            try $0.updateRefcount(offset: UInt64(cluster) << geometry.clusterBits, length: 1, addend: addend,
                                  decrease: decrease, type: .always)
        }
    }

    /// Writes every changed refcount block back (qcow2_cache_flush).
    func flushRefcountBlocks() throws {
        try withRefcounts(diagnostics: reporter) { try $0.blocks.writeBack() }
    }

    /// Writes back and forgets every cached block (qcow2_cache_empty).
    func emptyRefcountBlockCache() throws {
        try flushRefcountBlocks()
        allocator.blocks.removeAll()
    }
}

/// printf's "%" PRIx64.
func hexBare(_ value: UInt64) -> String {
    String(value, radix: 16)
}
