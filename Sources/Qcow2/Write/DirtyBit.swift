// Lazy refcounts and what an image needs before it is written (QEMU's
// qcow2_mark_dirty, qcow2_mark_clean and the writable part of qcow2_do_open).
//
// With compat lazy_refcounts=on the first L2 update sets the header's dirty
// bit (8 bytes, synced), after which refcount blocks are no longer ordered
// before L2 tables nor written on flush: they may lag behind on disk. A clean
// close writes everything and clears the bit with a full header rewrite. An
// image found dirty when opened for writing is checked and repaired first,
// errors and leaks (qcow2_co_check_locked), as QEMU's open does: by the
// check itself (Sources/Qcow2/Check), on this file, before anything is cached.
//
// Opening for writing also drops autoclear bits unknown to QEMU and a
// stale bitmaps extension, and loads the persistent dirty bitmaps (marking
// them in use on disk: Bitmaps/BitmapLoad.swift), as QEMU does, in its
// order: all of it before the repair of a dirty image.

extension Qcow2Writer {
    /// qcow2_mark_dirty.
    func markDirty() throws {
        guard version >= 3, !header.isDirty else { return }
        let features = header.incompatibleFeatures.union(.dirty)
        try writeIncompatibleFeatures(features)
        header.incompatibleFeatures = features
    }

    /// qcow2_mark_clean: with the bit cleared refcounts must be exact, so the
    /// caches are written (refcounts included) and synced before the header.
    func markClean() throws {
        guard header.isDirty else { return }
        header.incompatibleFeatures.remove(.dirty)
        try writeCaches()
        try file.flush()
        try writeHeaderCluster()
    }

    /// What opening an image for writing does before the first write.
    func prepareForWriting(warnsOfStaleBitmaps: Bool = true) throws {
        let unknownAutoclear = header.autoclearFeatures.subtracting(AutoclearFeatures.known)
        header.autoclearFeatures.subtract(unknownAutoclear)
        if foundStaleBitmaps && warnsOfStaleBitmaps {
            // QEMU's warning on open (the hint line has no line break there).
            let text = ImageInfoWarning.bitmapsInconsistent(versionTwo: version < 3).message(program: "")
            image.report(Qcow2Diagnostic(.errorReport, String(text.dropFirst(2))))
        }
        let headerUpdated = try loadBitmaps()
        if (!unknownAutoclear.isEmpty || foundStaleBitmaps) && !headerUpdated {
            try writeHeaderCluster()
        }
        if header.isDirty {
            // Left dirty when corruption remains, as QEMU does.
            if try guarded({ try repairRefcounts() }) { try markClean() }
        }
    }

    /// The check with errors and leaks fixed. Returns whether the image is
    /// consistent now; fails where QEMU's open does ("Could not repair dirty
    /// image"). Runs before the first write: the caches are empty.
    func repairRefcounts() throws -> Bool {
        let checker = try Qcow2Checker(file: file)
        let result: CheckResult
        do {
            // QEMU's open prints the repair's lines as qemu-img check does.
            let image = image
            result = try checker.check(repair: .all) { message in
                image.report(Qcow2Diagnostic(message.isErrorReport ? .errorReport : .plain, message.text))
            }
        } catch let failure as CheckFailure {
            adoptFatalCorruption(of: checker)
            throw Qcow2Error.writeFailed(errno: failure.errno, reason: "Could not repair dirty image")
        }
        adoptFatalCorruption(of: checker)
        if result.checkErrors > 0 || checker.isUnusable {
            throw Qcow2Error.writeFailed(errno: CheckErrno.io, reason: "Could not repair dirty image")
        }
        // Refcounts the repair left in its cache belong on disk now.
        do {
            try checker.flushRefcountBlocks()
        } catch let failure as CheckFailure {
            throw Qcow2Error.writeFailed(errno: failure.errno, reason: "Could not repair dirty image")
        }
        adoptRepairs(of: checker)
        return result.corruptions == 0
    }

    /// The check alone (qemu-img check without -r) of the file as it is once
    /// both caches are written; nothing is changed. For tests.
    func checkRefcounts() throws -> RefcountCheckOutcome {
        try map.l2Tables.writeBack()
        try allocator.blocks.writeBack()
        return try Qcow2Checker(file: file).checkRefcounts()
    }

    /// A repair that marked the image corrupt leaves it so here too.
    private func adoptFatalCorruption(of checker: Qcow2Checker) {
        guard let message = checker.fatalCorruption else { return }
        corruption = message
        header.incompatibleFeatures.insert(.corrupt)
    }

    /// Takes over what the repair changed: the refcount structure, COPIED
    /// flags of L1 entries and the snapshot table. The dirty bit stays set in
    /// memory: clearing it is markClean's (a full header rewrite).
    private func adoptRepairs(of checker: Qcow2Checker) {
        allocator.blocks.removeAll()
        map.l2Tables.removeAll()
        if checker.refcountTableOffset != allocator.tableOffset || checker.refcountTable != allocator.table {
            header.refcountTableOffset = checker.refcountTableOffset
            header.refcountTableClusters = UInt32(truncatingIfNeeded: UInt64(checker.refcountTable.count) * 8 / clusterSize)
            allocator.adoptTable(offset: checker.refcountTableOffset, entries: checker.refcountTable)
        }
        for i in 0..<min(map.l1.count, checker.l1Table.count) where map.l1[i] != checker.l1Table[i] {
            setL1Entry(i, checker.l1Table[i])
        }
        if header.snapshotsOffset != checker.snapshotTable.offset
            || header.snapshotCount != UInt32(checker.snapshotTable.entries.count) {
            header.snapshotsOffset = checker.snapshotTable.offset
            header.snapshotCount = UInt32(checker.snapshotTable.entries.count)
            snapshots = checker.snapshotTable
        }
        rebuildOverlapIndex()
    }
}
