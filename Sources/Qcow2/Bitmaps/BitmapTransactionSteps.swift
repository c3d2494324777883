// The steps a QMP transaction takes on an image's bitmaps and the undo of
// each (blockdev.c's block_dirty_bitmap_*_prepare/_commit/_abort in QEMU
// 7.2). A removal takes the bitmap off the disk at once and keeps it in
// memory, busy and no longer persistent, until the transaction commits (it
// is dropped) or aborts (persistent again: stored anew on close, at the end
// of the directory, as QEMU's store puts it). Clear and merge keep the bits
// before; an abort puts them back together with every guest range marked
// since the transaction began (the write log), so that no write goes
// unrecorded: QEMU drains guest I/O around a transaction, we log it.

extension Qcow2Image {
    /// Starts logging the guest ranges marked dirty (`markBitmapsDirty`).
    package func beginBitmapWriteLog() {
        try? withWriter { writer, _ in writer.bitmapWriteLog = [] }
    }

    /// Stops logging and forgets the log.
    package func endBitmapWriteLog() {
        try? withWriter { writer, _ in writer.bitmapWriteLog = nil }
    }

    /// block-dirty-bitmap-clear inside a transaction: the bitmap as it was.
    package func clearDirtyBitmapKeepingBackup(_ name: String) throws -> DirtyBitmap {
        try withWriter { writer, _ in
            let index = try Self.bitmapIndex(name, in: writer)
            try Self.checkUsable(writer.dirtyBitmaps[index])
            let backup = writer.dirtyBitmaps[index]
            writer.dirtyBitmaps[index].clear()
            return backup
        }
    }

    /// Undoes a clear or merge: the bits of `backup` plus every range
    /// logged since the transaction began if the bitmap records writes.
    package func restoreDirtyBitmap(_ backup: DirtyBitmap) {
        try? withWriter { writer, _ in
            guard let index = writer.dirtyBitmaps.firstIndex(where: { $0.name == backup.name }) else { return }
            var restored = writer.dirtyBitmaps[index]
            restored.clear()
            restored.merge(backup)
            if restored.isEnabled || backup.isEnabled {
                for range in writer.bitmapWriteLog ?? [] { restored.setDirty(offset: range.offset, length: range.length) }
            }
            writer.dirtyBitmaps[index] = restored
        }
    }

    /// The first part of a removal (block_dirty_bitmap_remove with release
    /// false): checks, the bitmap taken off the disk if persistent, then
    /// kept busy and not persistent. Returns whether it was persistent.
    package func detachDirtyBitmap(_ name: String) throws -> Bool {
        try withWriter { writer, _ in
            let index = try Self.bitmapIndex(name, in: writer)
            try Self.checkUsable(writer.dirtyBitmaps[index], inconsistent: false)
            let persistent = writer.dirtyBitmaps[index].isPersistent
            if persistent { try writer.removePersistentBitmap(name) }
            writer.dirtyBitmaps[index].isBusy = true
            writer.dirtyBitmaps[index].isPersistent = false
            return persistent
        }
    }

    /// Undoes `detachDirtyBitmap`: no longer busy, persistent as before.
    package func reattachDirtyBitmap(_ name: String, persistent: Bool) {
        try? withWriter { writer, _ in
            guard let index = writer.dirtyBitmaps.firstIndex(where: { $0.name == name }) else { return }
            writer.dirtyBitmaps[index].isBusy = false
            writer.dirtyBitmaps[index].isPersistent = persistent
        }
    }

    /// Drops a bitmap from memory only (a detached one, or one added by the
    /// transaction and never stored).
    package func releaseDirtyBitmap(_ name: String) {
        try? withWriter { writer, _ in writer.dirtyBitmaps.removeAll { $0.name == name } }
    }

    /// block-dirty-bitmap-enable/-disable inside a transaction: whether the
    /// bitmap was enabled before.
    package func setDirtyBitmapEnabledKeepingState(_ name: String, _ enabled: Bool) throws -> Bool {
        try withWriter { writer, _ in
            let index = try Self.bitmapIndex(name, in: writer)
            try Self.checkUsable(writer.dirtyBitmaps[index])
            let was = writer.dirtyBitmaps[index].isEnabled
            writer.dirtyBitmaps[index].isEnabled = enabled
            return was
        }
    }

    /// Undoes an enable or disable. A bitmap recording again gets every
    /// range logged since the transaction began: a disable undone must not
    /// lose the writes made while it was off (QEMU drains them away).
    package func restoreDirtyBitmapEnabled(_ name: String, _ enabled: Bool) {
        try? withWriter { writer, _ in
            guard let index = writer.dirtyBitmaps.firstIndex(where: { $0.name == name }) else { return }
            writer.dirtyBitmaps[index].isEnabled = enabled
            guard enabled else { return }
            for range in writer.bitmapWriteLog ?? [] {
                writer.dirtyBitmaps[index].setDirty(offset: range.offset, length: range.length)
            }
        }
    }

    static func bitmapIndex(_ name: String, in writer: Qcow2Writer) throws -> Int {
        guard let index = writer.dirtyBitmaps.firstIndex(where: { $0.name == name }) else {
            throw BitmapError("Dirty bitmap '\(name)' not found")
        }
        return index
    }
}
