// The refcounts the image itself records: looked up through the refcount
// table and its blocks (qcow2_get_refcount), and changed by repairs
// (update_refcount for one cluster). Blocks go through the write path's
// metadata cache at the size of QEMU's refcount block cache (four blocks,
// least recently used evicted): changes reach the disk when a block is
// evicted or the cache is flushed, and a run that ends with the image marked
// corrupt loses what was not written by then, exactly as QEMU does.

extension Qcow2Checker {
    /// The refcount of host cluster `cluster` as recorded on disk. An
    /// unaligned refcount block is reported (once) as corruption and fails
    /// with EIO, as in QEMU.
    func refcount(ofCluster cluster: Int64, diagnostics: CheckDiagnostics) throws -> UInt64 {
        let tableIndex = UInt64(cluster) >> geometry.refblockBits
        guard tableIndex < UInt64(refcountTable.count) else { return 0 }
        let blockOffset = refcountTable[Int(tableIndex)] & CheckMask.refcountTableOffset
        guard blockOffset != 0 else { return 0 }
        guard geometry.offsetIntoCluster(blockOffset) == 0 else {
            signalCorruption("Refblock offset \(hexPrefixed(blockOffset)) unaligned (reftable index: \(hexPrefixed(tableIndex)))",
                             diagnostics: diagnostics)
            throw CheckFailure(errno: CheckErrno.io)
        }
        let index = Int(UInt64(cluster) & (geometry.refblockSize - 1))
        return RefcountCoding.get(try refcountBlock(at: blockOffset).readOnlyBytes, index: index, width: geometry.width)
    }

    /// For scans in cluster order: the refcount block covering `cluster`,
    /// as cached right after a successful lookup of `cluster`; an empty
    /// array when no block exists (all refcounts zero); nil when unknown.
    /// Valid until the next refcount change.
    func cachedRefcountBlock(forCluster cluster: Int64) -> [UInt8]? {
        let tableIndex = UInt64(cluster) >> geometry.refblockBits
        guard tableIndex < UInt64(refcountTable.count) else { return [] }
        let blockOffset = refcountTable[Int(tableIndex)] & CheckMask.refcountTableOffset
        guard blockOffset != 0 else { return [] }
        return refblockCache.cached(blockOffset).map { Array($0.readOnlyBytes) }
    }

    /// Adds `addend` to (or takes it from) the refcount of one cluster whose
    /// refcount block exists (update_refcount as compare_refcounts uses it).
    /// A refcount that drops to zero has its cluster discarded: QEMU always
    /// passes such discards to the file, which then reads as zeroes there.
    @discardableResult
    func changeRefcount(ofCluster cluster: Int64, by addend: UInt64, decrease: Bool, discard: Bool = true,
                        diagnostics: CheckDiagnostics) throws -> UInt64 {
        let tableIndex = UInt64(cluster) >> geometry.refblockBits
        let blockOffset = tableIndex < UInt64(refcountTable.count)
            ? refcountTable[Int(tableIndex)] & CheckMask.refcountTableOffset : 0
        // Only clusters with a non-zero refcount are repaired this way, so
        // their block exists and is aligned (it was just read).
        guard blockOffset != 0, geometry.offsetIntoCluster(blockOffset) == 0 else {
            throw CheckFailure(errno: CheckErrno.io)
        }
        let index = Int(UInt64(cluster) & (geometry.refblockSize - 1))
        let width = geometry.width
        let block = try refcountBlock(at: blockOffset)
        let old = RefcountCoding.get(block.readOnlyBytes, index: index, width: width)
        let (newValue, overflow) = decrease ? old.subtractingReportingOverflow(addend) : old.addingReportingOverflow(addend)
        guard !overflow, newValue <= width.maxValue else { throw CheckFailure(errno: CheckErrno.invalid) }
        RefcountCoding.set(block.bytes, index: index, value: newValue, width: width)
        block.isDirty = true
        if newValue == 0 {
            let offset = UInt64(cluster) << geometry.clusterBits
            // The cluster may be cached as a refcount block; drop it unwritten.
            discardCachedRefcountBlock(at: offset)
            if discard { try? file.punchHole(offset: offset, length: geometry.clusterSize) }
        }
        return newValue
    }

    /// The cached refcount block at `offset`, read on a miss (after writing
    /// back the least recently used block if the cache is full).
    private func refcountBlock(at offset: UInt64) throws -> CachedCluster {
        try mappingIOErrors { try refblockCache.get(offset) }
    }

    /// The cache's checks: reads QEMU cannot address fail with EIO, and a
    /// write-back onto other metadata is refused (as corruption).
    func watchRefcountBlockCache() {
        refblockCache.checkBeforeRead = { [unowned self] offset in
            guard offset <= UInt64(Int64.max) - geometry.clusterSize else { throw CheckFailure(errno: CheckErrno.io) }
        }
        refblockCache.checkBeforeWrite = { [unowned self] offset, length in
            try checkBeforeWriting(offset: offset, size: UInt64(length), ignoring: [.refcountBlock], diagnostics: reporter)
            knownLength = nil
        }
    }

    /// Writes every changed refcount block back (qcow2_cache_flush).
    func flushRefcountBlocks() throws {
        try mappingIOErrors { try refblockCache.writeBack() }
    }

    /// Writes back and forgets every cached block (qcow2_cache_empty).
    func emptyRefcountBlockCache() throws {
        try flushRefcountBlocks()
        refblockCache.removeAll()
    }

    /// Drops a block unwritten: its cluster was just freed (qcow2_cache_discard).
    func discardCachedRefcountBlock(at offset: UInt64) {
        refblockCache.discard(offset)
    }

    /// File errors of the cache as the check's failures.
    private func mappingIOErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let Qcow2Error.io(_, code) {
            throw CheckFailure(errno: code)
        }
    }
}

/// printf's "%#" PRIx64: "0" for zero, "0x..." otherwise.
func hexPrefixed(_ value: UInt64) -> String {
    value == 0 ? "0" : "0x" + String(value, radix: 16)
}

/// printf's "%" PRIx64.
func hexBare(_ value: UInt64) -> String {
    String(value, radix: 16)
}
