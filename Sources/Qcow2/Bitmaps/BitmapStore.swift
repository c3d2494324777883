// Writing bitmaps back (QEMU's qcow2_store_persistent_dirty_bitmaps, run
// when an image open for writing is closed): every persistent, consistent
// bitmap gets new clusters, in directory order (bitmaps new to the image
// after the others, newest first): for each cluster of its bits with a bit
// set, one data cluster (zero padded); then its table, whose entries for
// clean clusters are 0 (QEMU never writes the all-ones entry). Then a new
// directory, the caches flushed, the header switched to it (with the
// autoclear bit), and only then the old directory and the old tables freed
// (their data clusters discarded). Inconsistent bitmaps keep their entry
// and clusters as they are.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A bitmap operation refused or failed, in QEMU's words.
package struct BitmapError: Error, Equatable, CustomStringConvertible {
    package var message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

extension Qcow2Writer {
    /// The directory as on disk now; empty without bitmaps.
    func currentBitmapDirectory() throws -> [BitmapDirectoryEntry] {
        guard let ext = bitmapsExtension else { return [] }
        return try BitmapDirectory.load(ext, file: file, clusterSize: clusterSize, virtualSize: imageSize)
    }

    /// Stores the bitmaps that changed in memory; throws BitmapError (or
    /// Qcow2Error.writeFailed) with QEMU's message when they are lost.
    func storeBitmaps() throws {
        var entries: [BitmapDirectoryEntry]
        do {
            entries = try currentBitmapDirectory()
        } catch {
            throw BitmapError(Qcow2Error.reason(of: error))
        }
        var stored: [Int: DirtyBitmap] = [:]
        var dropped: [(offset: UInt64, size: UInt32)] = []
        var count = entries.count
        var directorySize = bitmapsExtension?.directorySize ?? 0
        for bitmap in dirtyBitmaps where bitmap.isPersistent && !bitmap.isInconsistent {
            if let message = BitmapConstraints.violation(name: bitmap.name, granularity: bitmap.granularity,
                                                         size: imageSize, clusterSize: clusterSize) {
                throw BitmapError("Bitmap '\(bitmap.name)' doesn't satisfy the constraints: \(message)")
            }
            let index: Int
            if let found = entries.firstIndex(where: { $0.name == bitmap.name }) {
                guard entries[found].isInUse else { throw BitmapError("Bitmap '\(bitmap.name)' already exists in the image") }
                dropped.append((entries[found].tableOffset, entries[found].tableSize))
                entries[found].tableOffset = 0
                entries[found].tableSize = 0
                index = found
            } else {
                count += 1
                guard count <= Int(Qcow2Limits.maxBitmaps) else { throw BitmapError("Too many persistent bitmaps") }
                directorySize += BitmapDirectory.entrySize(nameLength: bitmap.name.utf8.count)
                guard directorySize <= Qcow2Limits.maxBitmapDirectorySize else {
                    throw BitmapError("Bitmap directory is too large")
                }
                entries.append(BitmapDirectoryEntry(tableOffset: 0, tableSize: 0, flags: 0,
                                                    granularityBits: bitmap.granularityBits, name: bitmap.name))
                index = entries.count - 1
            }
            entries[index].flags = bitmap.isEnabled ? BitmapDirectory.flagAuto : 0
            entries[index].granularityBits = bitmap.granularityBits
            stored[index] = bitmap
        }
        guard !stored.isEmpty else { return }
        for index in entries.indices {
            guard let bitmap = stored[index] else { continue }
            let table = try storeBitmapData(bitmap)
            entries[index].tableOffset = table.offset
            entries[index].tableSize = table.size
        }
        do {
            try updateBitmapDirectory(entries)
        } catch {
            throw Qcow2Error.writeFailed(errno: Qcow2Error.errnoValue(of: error), reason:
                "Failed to update bitmap extension: \(errnoDescription(Qcow2Error.errnoValue(of: error)))")
        }
        for table in dropped { freeBitmapClusters(tableOffset: table.offset, tableSize: table.size) }
    }

    /// store_bitmap and store_bitmap_data: the data clusters, then the table.
    private func storeBitmapData(_ bitmap: DirtyBitmap) throws -> (offset: UInt64, size: UInt32) {
        let tableSize = BitmapTable.entries(for: bitmap, clusterSize: clusterSize)
        guard tableSize <= UInt64(BitmapDirectory.maxTableSize),
              tableSize * clusterSize <= BitmapDirectory.maxPhysicalSize else {
            throw BitmapError("Bitmap '\(bitmap.name)' is too big")
        }
        let bitsPerCluster = clusterSize * 8
        let serialized = bitmap.serializedSize
        var table = [UInt64](repeating: 0, count: Int(tableSize))
        for i in 0..<tableSize {
            let first = i * bitsPerCluster
            guard bitmap.hasDirtyBits(from: first, to: min(bitmap.bitCount, first + bitsPerCluster)) else { continue }
            let offset = try failing("Failed to allocate clusters for bitmap '\(bitmap.name)'") {
                try allocator.allocateClusters(clusterSize)
            }
            table[Int(i)] = offset
            let byteCount = Int(min(serialized - i * clusterSize, clusterSize))
            var data = bitmap.serialize(fromBit: first, byteCount: byteCount)
            data += [UInt8](repeating: 0, count: Int(clusterSize) - data.count)
            try failing("Qcow2 overlap check failed") { try checkOverlap(offset: offset, length: clusterSize) }
            try failing("Failed to write bitmap '\(bitmap.name)' to file") { try file.write(data, at: offset) }
        }
        let tableOffset = try failing("Failed to reserve clusters") { try allocator.allocateClusters(tableSize * 8) }
        var bytes = [UInt8](repeating: 0, count: Int(tableSize) * 8)
        for (i, entry) in table.enumerated() { bytes.setBE(entry, at: i * 8) }
        try failing("Can't write bitmap '\(bitmap.name)'") { try checkOverlap(offset: tableOffset, length: UInt64(bytes.count)) }
        try failing("Failed to write bitmap '\(bitmap.name)'") { try file.write(bytes, at: tableOffset) }
        return (tableOffset, UInt32(tableSize))
    }

    /// update_ext_header_and_dir: the entries to a new directory (or none),
    /// the header switched to it, the old directory freed.
    func updateBitmapDirectory(_ entries: [BitmapDirectoryEntry]) throws {
        let old = bitmapsExtension
        let oldAutoclear = header.autoclearFeatures
        var new: BitmapsExtension?
        if !entries.isEmpty {
            guard entries.count <= Int(Qcow2Limits.maxBitmaps) else {
                throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Invalid argument")
            }
            let directory = BitmapDirectory.encode(entries)
            guard UInt64(directory.count) <= Qcow2Limits.maxBitmapDirectorySize else {
                throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Invalid argument")
            }
            let offset = try allocator.allocateClusters(UInt64(directory.count))
            do {
                try checkOverlap(offset: offset, length: UInt64(directory.count))
                try file.write(directory, at: offset)
                try writeCaches()
                try file.flush()
            } catch {
                freeClusters(offset: offset, length: UInt64(directory.count), type: .other)
                throw error
            }
            new = BitmapsExtension(bitmapCount: UInt32(entries.count), directorySize: UInt64(directory.count),
                                   directoryOffset: offset)
            header.autoclearFeatures.insert(.bitmaps)
        } else {
            header.autoclearFeatures.remove(.bitmaps)
        }
        bitmapsExtension = new
        updateBitmapDirectoryOverlap()
        do {
            try writeHeaderSynced()
        } catch {
            bitmapsExtension = old
            header.autoclearFeatures = oldAutoclear
            updateBitmapDirectoryOverlap()
            if let new { freeClusters(offset: new.directoryOffset, length: new.directorySize, type: .other) }
            throw error
        }
        if let old, old.directorySize > 0 {
            freeClusters(offset: old.directoryOffset, length: old.directorySize, type: .other)
        }
    }

    /// free_bitmap_clusters: the data clusters a table names (discarded),
    /// then the table; nothing when the table cannot be read.
    func freeBitmapClusters(tableOffset: UInt64, tableSize: UInt32) {
        guard tableSize > 0, let table = try? BitmapTable.read(file: file, offset: tableOffset, entries: tableSize),
              table.allSatisfy({ BitmapTableEntry.isValid($0, clusterSize: clusterSize) }) else { return }
        for entry in table where entry & BitmapTableEntry.offsetMask != 0 {
            freeClusters(offset: entry & BitmapTableEntry.offsetMask, length: clusterSize, type: .always)
        }
        freeClusters(offset: tableOffset, length: UInt64(tableSize) * 8, type: .other)
    }
}
