// Making writes durable, and closing (QEMU's qcow2_co_flush_to_os,
// qcow2_write_caches, qcow2_inactivate and qcow2_mark_clean).
//
// The ordering rules of the whole write path, and where they are enforced:
//  - refcounts before references: a new cluster's refcount reaches the disk
//    before the L2 entry using it (the L2 cache depends on the refcount
//    cache: CopyOnWrite.swift, CompressedWrites.swift), and the L2 entry
//    dropping a reference reaches it before the refcount drops (the
//    refcount cache depends on the L2 cache: RefcountAllocator.swift);
//  - tables before pointers: a new L2 table is written and flushed before
//    its L1 entry (L2TableAllocation.swift), a new refcount block before its
//    refcount table entry, a new refcount table or L1 table before the
//    header names it (RefcountAllocator.swift, L1Growth.swift);
//  - data before pointers: copied-on-write data is synced before any L2
//    table is written again (CopyOnWrite.swift);
//  - nothing overwrites metadata: every metadata write and every guest data
//    write to a host cluster is checked first (Corruption.swift);
//  - with lazy refcounts the image is marked dirty before the first L2
//    update, and refcounts are then only written on eviction and close;
//    clean close writes them and clears the bit (DirtyBit.swift).
// A flush writes the caches (L2 tables first, then refcount blocks unless
// they may lag) and syncs the file; QEMU syncs nowhere else on a plain
// write, so neither does this.

extension Qcow2Writer {
    /// qcow2_write_caches.
    func writeCaches() throws {
        try map.l2Tables.writeBack()
        if needsAccurateRefcounts { try allocator.blocks.writeBack() }
    }

    /// What QEMU does when an image is closed: a flush, then both caches
    /// flushed and the dirty bit cleared (qcow2_inactivate). QEMU's close
    /// cannot fail: a cache that cannot be written is reported, the other
    /// one is still tried, and the image is left dirty. The first such
    /// failure is thrown after the report, for embedders. Idempotent.
    func close() throws {
        guard !isClosed else { return }
        defer { isClosed = true }
        if corruption != nil { return }
        // bdrv_close's flush: its result is not looked at, the cache
        // flushes below fail (and are reported) the same way.
        do {
            try writeCaches()
            try file.flush()
        } catch {}
        // qcow2_inactivate: bitmaps first; losing them is reported, the
        // caches are still written, but the image is not marked clean.
        var bitmapsLost = false
        do {
            try storeBitmaps()
        } catch {
            bitmapsLost = true
            let reason = (error as? BitmapError)?.message ?? Qcow2Error.reason(of: error)
            image.report(Qcow2Diagnostic(
                .errorReport, "Lost persistent bitmaps during inactivation of node '\(BitmapConstraints.anonymousNodeName)': \(reason)"))
        }
        var failure: Error?
        let caches: [(any WriteBackCache, String)] = [(map.l2Tables, "L2 table"), (allocator.blocks, "refcount block")]
        for (cache, name) in caches {
            do {
                try cache.flush()
            } catch {
                failure = failure ?? error
                image.report(Qcow2Diagnostic(
                    .errorReport, "Failed to flush the \(name) cache: \(Qcow2Error.reason(of: error))"))
            }
        }
        if let failure { throw failure }
        // qcow2_inactivate ignores qcow2_mark_clean's result.
        if !bitmapsLost { try? markClean() }
    }
}

extension Qcow2Image {
    /// bdrv_flush on the image: caches written (lock held), then the file
    /// synced (lock released).
    func flushWriter() throws {
        try withWriter { writer, _ in try writer.guarded { try writer.writeCaches() } }
        try file.flush()
    }
}
