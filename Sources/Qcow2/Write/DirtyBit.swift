// Lazy refcounts and what an image needs before it is written (QEMU's
// qcow2_mark_dirty, qcow2_mark_clean and the writable part of qcow2_do_open).
//
// With compat lazy_refcounts=on the first L2 update sets the header's dirty
// bit (8 bytes, synced), after which refcount blocks are no longer ordered
// before L2 tables nor written on flush: they may lag behind on disk. A clean
// close writes everything and clears the bit with a full header rewrite. An
// image found dirty when opened for writing has its refcounts repaired from
// the metadata first (RefcountRebuild.swift), as QEMU's open does.
//
// Opening for writing also drops autoclear bits unknown to QEMU, as QEMU
// does. Images with persistent bitmaps in use are refused: QEMU keeps them
// up to date as it writes, which is not done here, and invalidating them
// would leave their clusters leaked.

extension Qcow2Writer {
    /// qcow2_mark_dirty.
    func markDirtyLocked() throws {
        guard version >= 3, !header.isDirty else { return }
        let features = header.incompatibleFeatures.union(.dirty)
        try writeIncompatibleFeaturesLocked(features)
        header.incompatibleFeatures = features
    }

    /// qcow2_mark_clean: with the bit cleared refcounts must be exact, so the
    /// caches are written (refcounts included) and synced before the header.
    func markCleanLocked() throws {
        guard header.isDirty else { return }
        header.incompatibleFeatures.remove(.dirty)
        try writeCachesLocked()
        try file.flush()
        try writeHeaderClusterLocked()
    }

    /// What opening an image for writing does before the first write.
    func prepareForWriting() throws {
        try lock.withLock {
            let unknownAutoclear = header.autoclearFeatures.subtracting(AutoclearFeatures.known)
            if !unknownAutoclear.isEmpty {
                header.autoclearFeatures.subtract(unknownAutoclear)
                try writeHeaderClusterLocked()
            }
            if header.isDirty {
                // Left dirty when corruption remains, as QEMU does.
                if try guardedLocked({ try repairRefcountsLocked() }) { try markCleanLocked() }
            }
        }
    }
}
