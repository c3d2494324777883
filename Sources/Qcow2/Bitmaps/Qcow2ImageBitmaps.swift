// The dirty bitmaps of an open image, as QEMU's block-dirty-bitmap-*
// commands and qemu-img bitmap handle them (block/monitor/bitmap-qmp-cmds.c,
// block/dirty-bitmap.c, qcow2_co_can_store_new_dirty_bitmap and
// qcow2_co_remove_persistent_dirty_bitmap): checks and messages in QEMU's
// order. Changes live in memory until the image is closed (BitmapStore),
// except a removal, which rewrites the directory at once, as QEMU's does.
// Guest writes, zero writes and discards mark every enabled bitmap
// (`markBitmapsDirty`, from Qcow2Write.swift).

extension Qcow2Image {
    /// The bitmaps in memory (newest first), or for an image opened
    /// read-only those on disk (in-use ones without their bits).
    package func dirtyBitmaps() throws -> [DirtyBitmap] {
        if isWritable { return try withWriter { writer, _ in writer.dirtyBitmaps } }
        let layout = header
        guard layout.autoclearFeatures.contains(.bitmaps) else { return [] }
        var ext: BitmapsExtension?
        for case let .bitmaps(data) in extensions { ext = try BitmapsExtension(data: data) }
        guard let ext else { return [] }
        var list: [DirtyBitmap] = []
        let size = layout.size & ~511
        let entries = try BitmapDirectory.load(ext, file: file, header: layout)
        if let message = BitmapConstraints.memoryViolation(total: BitmapConstraints.memory(of: entries, size: size)) {
            throw BitmapError(message)
        }
        for entry in entries {
            var bitmap = DirtyBitmap(name: entry.name, granularity: UInt64(1) << UInt64(entry.granularityBits),
                                     size: size, isEnabled: entry.isAuto && !entry.isInUse,
                                     isInconsistent: entry.isInUse)
            if !entry.isInUse {
                try BitmapTable.load(into: &bitmap, entry: entry, file: file, clusterSize: layout.clusterSize)
            }
            list.insert(bitmap, at: 0)
        }
        return list
    }

    /// The bitmap named `name` (block_dirty_bitmap_lookup).
    package func dirtyBitmap(named name: String) throws -> DirtyBitmap {
        guard let found = try dirtyBitmaps().first(where: { $0.name == name }) else {
            throw BitmapError("Dirty bitmap '\(name)' not found")
        }
        return found
    }

    /// block-dirty-bitmap-add. `node` names the image in messages.
    package func addDirtyBitmap(_ name: String, granularity: UInt64?, persistent: Bool, disabled: Bool,
                                node: String) throws {
        guard !name.isEmpty else { throw BitmapError("Bitmap name cannot be empty") }
        if let granularity, granularity < 512 || granularity & (granularity - 1) != 0 {
            throw BitmapError("Granularity must be power of 2 and at least 512")
        }
        try withWriter { writer, _ in
            let granularity = granularity ?? BitmapConstraints.defaultGranularity(clusterSize: writer.clusterSize)
            if persistent { try writer.checkNewPersistentBitmap(name, granularity: granularity, node: node) }
            guard !writer.dirtyBitmaps.contains(where: { $0.name == name }) else {
                throw BitmapError("Bitmap already exists: \(name)")
            }
            guard name.utf8.count <= Int(BitmapDirectory.maxNameSize) else {
                throw BitmapError("Bitmap name too long: \(name)")
            }
            let held = writer.dirtyBitmaps.filter { !$0.isInconsistent }.reduce(0) { $0 + $1.serializedSize }
            let total = held + BitmapConstraints.memory(granularity: granularity, size: writer.imageSize)
            if let message = BitmapConstraints.memoryViolation(total: total) { throw BitmapError(message) }
            writer.dirtyBitmaps.insert(DirtyBitmap(name: name, granularity: granularity, size: writer.imageSize,
                                                   isEnabled: !disabled, isPersistent: persistent), at: 0)
        }
    }

    /// block-dirty-bitmap-remove: a persistent bitmap leaves the directory
    /// at once.
    package func removeDirtyBitmap(_ name: String) throws {
        try withWriter { writer, _ in
            let index = try Self.bitmapIndex(name, in: writer)
            try Self.checkUsable(writer.dirtyBitmaps[index], inconsistent: false)
            if writer.dirtyBitmaps[index].isPersistent { try writer.removePersistentBitmap(name) }
            writer.dirtyBitmaps.remove(at: index)
        }
    }

    /// block-dirty-bitmap-clear.
    package func clearDirtyBitmap(_ name: String) throws {
        try changeDirtyBitmap(name) { $0.clear() }
    }

    /// block-dirty-bitmap-enable and -disable.
    package func setDirtyBitmapEnabled(_ name: String, _ enabled: Bool) throws {
        try changeDirtyBitmap(name) { $0.isEnabled = enabled }
    }

    /// The last step of block-dirty-bitmap-merge: the sources, gathered by
    /// the caller into one bitmap (`DirtyBitmap.mergeChecked`), into
    /// `target`. Returns the target as it was.
    @discardableResult
    package func mergeDirtyBitmap(into target: String, from source: DirtyBitmap) throws -> DirtyBitmap {
        try withWriter { writer, _ in
            let index = try Self.bitmapIndex(target, in: writer)
            let backup = writer.dirtyBitmaps[index]
            try writer.dirtyBitmaps[index].mergeChecked(source)
            return backup
        }
    }

    private func changeDirtyBitmap(_ name: String, _ change: (inout DirtyBitmap) -> Void) throws {
        try withWriter { writer, _ in
            let index = try Self.bitmapIndex(name, in: writer)
            try Self.checkUsable(writer.dirtyBitmaps[index])
            change(&writer.dirtyBitmaps[index])
        }
    }

    /// bdrv_dirty_bitmap_check: busy, then inconsistent (nothing here is
    /// read-only); `inconsistent: false` for the checks that let those pass.
    package static func checkUsable(_ bitmap: DirtyBitmap, inconsistent: Bool = true) throws {
        if bitmap.isBusy {
            throw BitmapError("Bitmap '\(bitmap.name)' is currently in use by another operation and cannot be used")
        }
        if inconsistent && bitmap.isInconsistent {
            throw BitmapError("Bitmap '\(bitmap.name)' is inconsistent and cannot be used\n"
                              + "Try block-dirty-bitmap-remove to delete this bitmap from disk")
        }
    }

    /// Ranges a transaction's write log keeps before it stands for all.
    static let bitmapWriteLogLimit = 4096

    /// Sets the bits of every enabled bitmap over a guest range that was
    /// written, zeroed or discarded (bdrv_set_dirty), whether the request
    /// succeeded or not, as QEMU does.
    func markBitmapsDirty(offset: UInt64, length: UInt64) {
        guard tracksDirtyBitmaps.load(ordering: .relaxed) else { return }
        try? withWriter { writer, _ in
            for i in writer.dirtyBitmaps.indices where writer.dirtyBitmaps[i].isEnabled {
                writer.dirtyBitmaps[i].setDirty(offset: offset, length: length)
            }
            if let count = writer.bitmapWriteLog?.count {
                // Bounded: past its limit the log says "everything", which an
                // undo turns into all bits set (too many, never too few).
                if count < Self.bitmapWriteLogLimit {
                    writer.bitmapWriteLog?.append((offset, length))
                } else {
                    writer.bitmapWriteLog = [(0, .max)]
                }
            }
        }
    }
}

extension DirtyBitmap {
    /// bdrv_merge_dirty_bitmap: both checked (this one, then the source),
    /// the sizes compared, then the source's bits added.
    package mutating func mergeChecked(_ source: DirtyBitmap) throws {
        try Qcow2Image.checkUsable(self)
        try Qcow2Image.checkUsable(source)
        guard size == source.size else {
            throw BitmapError("Bitmaps are of different sizes (destination size is \(size), "
                              + "source size is \(source.size)) and can't be merged")
        }
        merge(source)
    }
}

extension Qcow2Writer {
    /// qcow2_co_can_store_new_dirty_bitmap.
    func checkNewPersistentBitmap(_ name: String, granularity: UInt64, node: String) throws {
        if dirtyBitmaps.contains(where: { $0.name == name }) { throw BitmapError("Bitmap already exists: \(name)") }
        let prefix = "Can't make bitmap '\(name)' persistent in '\(node)': "
        guard version >= 3 else { throw BitmapError(prefix + "Cannot store dirty bitmaps in qcow2 v2 files") }
        if let message = BitmapConstraints.violation(name: name, granularity: granularity, size: imageSize,
                                                     clusterSize: clusterSize) {
            throw BitmapError(prefix + message)
        }
        let persistent = dirtyBitmaps.filter(\.isPersistent)
        let directorySize = persistent.reduce(BitmapDirectory.entrySize(nameLength: name.utf8.count)) {
            $0 + BitmapDirectory.entrySize(nameLength: $1.name.utf8.count)
        }
        if persistent.count + 1 > Int(Qcow2Limits.maxBitmaps) {
            throw BitmapError(prefix + "Maximum number of persistent bitmaps is already reached")
        }
        if directorySize > Qcow2Limits.maxBitmapDirectorySize {
            throw BitmapError(prefix + "Not enough space in the bitmap directory")
        }
    }

    /// qcow2_co_remove_persistent_dirty_bitmap: the directory without it,
    /// then its clusters freed. A bitmap not on disk is no error.
    func removePersistentBitmap(_ name: String) throws {
        guard bitmapsExtension != nil else { return }
        var entries: [BitmapDirectoryEntry]
        do {
            entries = try currentBitmapDirectory()
        } catch {
            throw BitmapError(Qcow2Error.reason(of: error))
        }
        guard let index = entries.firstIndex(where: { $0.name == name }) else { return }
        let removed = entries.remove(at: index)
        do {
            try updateBitmapDirectory(entries)
        } catch {
            throw BitmapError("Failed to update bitmap extension: \(errnoDescription(Qcow2Error.errnoValue(of: error)))")
        }
        freeBitmapClusters(tableOffset: removed.tableOffset, tableSize: removed.tableSize)
    }
}
