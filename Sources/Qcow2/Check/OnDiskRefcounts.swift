// The refcounts the image itself records: looked up through the refcount
// table and its blocks (qcow2_get_refcount), and changed by repairs
// (update_refcount for one cluster). Blocks go through a cache like QEMU's
// refcount block cache, of the same size (four blocks, least recently used
// evicted): changes reach the disk when a block is evicted or the cache is
// flushed, and a run that ends with the image marked corrupt loses what
// was not written by then, exactly as QEMU does.

final class RefblockCache {
    struct Block {
        var offset: UInt64
        var bytes: [UInt8]
        var isDirty = false
        var lastUse: UInt64 = 0
    }
    var blocks: [Block] = []
    var useCounter: UInt64 = 0
    /// QEMU's MIN_REFCOUNT_CACHE_SIZE, the default: four clusters.
    let capacity = 4
}

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
        return try withRefcountBlock(at: blockOffset) { bytes in
            bytes.withUnsafeBytes { RefcountCoding.get($0, index: index, width: geometry.width) }
        }
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
        return refblockCache.blocks.first { $0.offset == blockOffset }?.bytes
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
        let newValue: UInt64 = try withRefcountBlock(at: blockOffset, modify: true) { bytes in
            let old = bytes.withUnsafeBytes { RefcountCoding.get($0, index: index, width: width) }
            let (value, overflow) = decrease ? old.subtractingReportingOverflow(addend) : old.addingReportingOverflow(addend)
            guard !overflow, value <= width.maxValue else { throw CheckFailure(errno: CheckErrno.invalid) }
            bytes.withUnsafeMutableBytes { RefcountCoding.set($0, index: index, value: value, width: width) }
            return value
        }
        if newValue == 0 {
            let offset = UInt64(cluster) << geometry.clusterBits
            // The cluster may be cached as a refcount block; drop it unwritten.
            discardCachedRefcountBlock(at: offset)
            if discard { try? file.punchHole(offset: offset, length: geometry.clusterSize) }
        }
        return newValue
    }

    /// Runs `body` on the cached copy of the refcount block at `offset`,
    /// reading it on a miss (after writing back the least recently used
    /// block if the cache is full).
    private func withRefcountBlock<T>(at offset: UInt64, modify: Bool = false,
                                      _ body: (inout [UInt8]) throws -> T) throws -> T {
        let cache = refblockCache
        var index = cache.blocks.firstIndex { $0.offset == offset }
        if index == nil {
            if cache.blocks.count >= cache.capacity,
               let victim = cache.blocks.indices.min(by: { cache.blocks[$0].lastUse < cache.blocks[$1].lastUse }) {
                try writeBack(victim)
                cache.blocks.remove(at: victim)
            }
            cache.blocks.append(RefblockCache.Block(offset: offset, bytes: try read(Int(geometry.clusterSize), at: offset)))
            index = cache.blocks.count - 1
        }
        let i = index ?? 0
        cache.useCounter += 1
        cache.blocks[i].lastUse = cache.useCounter
        let result = try body(&cache.blocks[i].bytes)
        if modify { cache.blocks[i].isDirty = true }
        return result
    }

    /// Writes one changed block, refusing (as corruption) a write onto other metadata.
    private func writeBack(_ index: Int) throws {
        let block = refblockCache.blocks[index]
        guard block.isDirty else { return }
        try checkBeforeWriting(offset: block.offset, size: geometry.clusterSize, ignoring: [.refcountBlock],
                               diagnostics: reporter)
        try write(block.bytes, at: block.offset)
        refblockCache.blocks[index].isDirty = false
    }

    /// Writes every changed refcount block back (qcow2_cache_flush).
    func flushRefcountBlocks() throws {
        for i in refblockCache.blocks.indices { try writeBack(i) }
    }

    /// Writes back and forgets every cached block (qcow2_cache_empty).
    func emptyRefcountBlockCache() throws {
        try flushRefcountBlocks()
        refblockCache.blocks.removeAll()
    }

    /// Drops a block unwritten: its cluster was just freed (qcow2_cache_discard).
    func discardCachedRefcountBlock(at offset: UInt64) {
        refblockCache.blocks.removeAll { $0.offset == offset }
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
