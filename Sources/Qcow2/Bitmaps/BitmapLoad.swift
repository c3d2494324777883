// Opening an image for writing with persistent dirty bitmaps (QEMU's
// qcow2_load_dirty_bitmaps): every bitmap of the directory comes into
// memory; each one not `in-use` gets its bits read and is then marked
// `in-use` on disk before the first guest write, so that a crash leaves it
// marked; one already `in-use` (a crash, or another user) is inconsistent:
// its bits are not read, it is neither dirtied nor stored, and stays marked
// until removed. Bitmaps without the `auto` flag are disabled.
//
// The directory is rewritten in place with the autoclear bit cleared
// around the write (update_ext_header_and_dir_in_place): a crash in between
// leaves the bitmaps ignored by QEMU (and their clusters leaked) rather
// than half written.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// Loads the bitmaps; returns whether the header was rewritten.
    func loadBitmaps() throws -> Bool {
        guard let ext = bitmapsExtension else { return false }
        var entries = try BitmapDirectory.load(ext, file: file, clusterSize: clusterSize, virtualSize: imageSize)
        if let message = BitmapConstraints.memoryViolation(
            total: BitmapConstraints.memory(of: entries, size: imageSize)) {
            throw Qcow2Error.invalidBitmaps(message)
        }
        var needsUpdate = false
        for i in entries.indices {
            let entry = entries[i]
            var bitmap = DirtyBitmap(name: entry.name, granularity: UInt64(1) << UInt64(entry.granularityBits),
                                     size: imageSize, isEnabled: entry.isAuto && !entry.isInUse,
                                     isInconsistent: entry.isInUse)
            if !entry.isInUse {
                try BitmapTable.load(into: &bitmap, entry: entry, file: file, clusterSize: clusterSize)
                entries[i].flags |= BitmapDirectory.flagInUse
                needsUpdate = true
            }
            dirtyBitmaps.insert(bitmap, at: 0)
        }
        guard needsUpdate else { return false }
        do {
            try updateBitmapDirectoryInPlace(entries)
        } catch {
            throw Qcow2Error.invalidBitmaps(
                "Can't update bitmap directory: \(errnoDescription(Qcow2Error.errnoValue(of: error)))")
        }
        return true
    }

    /// update_ext_header_and_dir_in_place: the same entries (flags changed)
    /// over the old directory, between two synced header writes without
    /// the autoclear bit.
    func updateBitmapDirectoryInPlace(_ entries: [BitmapDirectoryEntry]) throws {
        guard header.autoclearFeatures.contains(.bitmaps), let ext = bitmapsExtension, !entries.isEmpty,
              entries.count == Int(ext.bitmapCount) else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Invalid argument")
        }
        header.autoclearFeatures.remove(.bitmaps)
        updateBitmapDirectoryOverlap()
        try writeHeaderSynced()
        let directory = BitmapDirectory.encode(entries)
        guard UInt64(directory.count) == ext.directorySize, ext.directoryOffset != 0 else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Invalid argument")
        }
        try checkOverlap(offset: ext.directoryOffset, length: UInt64(directory.count), ignoring: [.bitmapDirectory])
        try file.write(directory, at: ext.directoryOffset)
        try writeHeaderSynced()
        header.autoclearFeatures.insert(.bitmaps)
        updateBitmapDirectoryOverlap()
        try writeHeaderSynced()
    }

    /// update_header_sync: the header cluster, then the file synced; the
    /// image's view of its extensions follows.
    func writeHeaderSynced() throws {
        try writeHeaderCluster()
        try file.flush()
        var records = extensions
        if let bitmapsExtension { records.append(.bitmaps(bitmapsExtension.encode())) }
        let autoclear = header.autoclearFeatures
        image.stored.withLock {
            $0.extensions = records
            $0.header.autoclearFeatures = autoclear
        }
    }
}

extension Qcow2Image {
    /// For a writable open that wrote nothing (a verb checking its operand
    /// before a job opens the image again): the bitmaps it marked `in-use`
    /// on open are unmarked in place and dropped from memory, so that its
    /// close stores nothing and the file is as it was; the later open then
    /// stores them once, as QEMU's single open does.
    package func putBackUnchangedBitmaps() throws {
        try withWriter { writer, _ in
            let loaded = Set(writer.dirtyBitmaps.filter { $0.isPersistent && !$0.isInconsistent }.map(\.name))
            guard !loaded.isEmpty else { return }
            var entries = try writer.currentBitmapDirectory()
            for i in entries.indices where loaded.contains(entries[i].name) {
                entries[i].flags &= ~BitmapDirectory.flagInUse
            }
            try writer.updateBitmapDirectoryInPlace(entries)
            writer.dirtyBitmaps = []
        }
    }
}
