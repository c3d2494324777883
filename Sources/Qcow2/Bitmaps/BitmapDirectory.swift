// The persistent dirty bitmaps' directory (docs/interop/qcow2.txt, "Bitmap
// directory"), checked entry by entry as QEMU's bitmap_list_load does, with
// QEMU's messages, so that an image QEMU refuses is refused here too. Info
// shows the names, granularities and flags; the check counts the clusters of
// each bitmap's table; the write path loads (BitmapLoad) and writes
// (BitmapStore, `encode`) it.
//
// Directory entry: bitmap_table_offset (8), bitmap_table_size (4), flags (4),
// type (1), granularity_bits (1), name_size (2), extra_data_size (4), extra
// data, name, padding to 8 bytes.

/// One directory entry that passed QEMU's checks (check_dir_entry).
struct BitmapDirectoryEntry: Equatable, Sendable {
    var tableOffset: UInt64
    /// Entries in the bitmap table.
    var tableSize: UInt32
    var flags: UInt32
    var granularityBits: UInt8
    var name: String

    var isInUse: Bool { flags & BitmapDirectory.flagInUse != 0 }
    var isAuto: Bool { flags & BitmapDirectory.flagAuto != 0 }

    var info: BitmapInfo {
        var infoFlags: [BitmapInfo.Flag] = []
        if flags & BitmapDirectory.flagInUse != 0 { infoFlags.append(.inUse) }
        if flags & BitmapDirectory.flagAuto != 0 { infoFlags.append(.auto) }
        return BitmapInfo(name: name, granularity: UInt32(1) << UInt32(granularityBits), flags: infoFlags)
    }
}

package enum BitmapDirectory {
    /// QEMU's limits on one entry's fields.
    static let maxTableSize: UInt32 = 0x800_0000
    static let maxPhysicalSize: UInt64 = 0x2000_0000
    static let granularityRange: ClosedRange<UInt8> = 9...31
    static let maxNameSize: UInt16 = 1023
    static let entryHeaderSize = 24
    static let flagInUse: UInt32 = 1 << 0
    static let flagAuto: UInt32 = 1 << 1
    static let dirtyTrackingType: UInt8 = 1

    /// The bitmaps of an open image: nil when it has none (or when they are
    /// ignored because a program without bitmap support touched the image,
    /// which `warnings` then says).
    package static func read(image: Qcow2Image, warnings: inout [ImageInfoWarning]) throws -> [BitmapInfo]? {
        guard let payload = image.extensions.lazy.compactMap({ ext -> [UInt8]? in
            if case let .bitmaps(data) = ext { return data }
            return nil
        }).first else { return nil }

        // The extension's checks are the ones opening makes (in QEMU's order:
        // length, then the autoclear bit, then the fields).
        let ext: BitmapsExtension
        do {
            ext = try BitmapsExtension(data: payload)
            guard image.header.autoclearFeatures.contains(.bitmaps) else {
                warnings.append(.bitmapsInconsistent(versionTwo: image.header.version < 3))
                return nil
            }
            try ext.validate(clusterSize: image.header.clusterSize)
        } catch let Qcow2Error.invalidHeaderExtension(message) {
            throw Qcow2Error.invalidBitmaps(message)
        }
        return try load(ext, file: image.file, header: image.header).map(\.info)
    }

    /// Reads and checks the directory a validated extension names (what
    /// opening an image does in QEMU: bitmap_list_load).
    static func load(_ ext: BitmapsExtension, file: BlockFile, header: Qcow2Header) throws -> [BitmapDirectoryEntry] {
        try load(ext, file: file, clusterSize: header.clusterSize, virtualSize: header.size & ~511)
    }

    static func load(_ ext: BitmapsExtension, file: BlockFile, clusterSize: UInt64,
                     virtualSize: UInt64) throws -> [BitmapDirectoryEntry] {
        guard ext.directorySize > 0 else { throw Qcow2Error.invalidBitmaps("Requested bitmap directory size is zero") }
        let fileSize = try file.size()
        guard ext.directoryOffset <= fileSize, ext.directorySize <= fileSize - ext.directoryOffset else {
            throw Qcow2Error.invalidBitmaps("Failed to read bitmap directory")
        }
        let directory = try file.readExactly(Int(ext.directorySize), at: ext.directoryOffset,
                                             step: "reading bitmap directory")
        let list = try entries(directory, count: ext.bitmapCount, clusterSize: clusterSize, virtualSize: virtualSize)
        // QEMU makes a dirty bitmap of each entry in turn on every open, and
        // a second one of the same name fails it (bdrv_create_dirty_bitmap).
        var names = Set<String>()
        for entry in list where !names.insert(entry.name).inserted {
            throw Qcow2Error.invalidBitmaps("Bitmap already exists: \(entry.name)")
        }
        return list
    }

    /// The bytes of one entry with a name of `nameLength` bytes, padded to 8
    /// (calc_dir_entry_size).
    static func entrySize(nameLength: Int) -> UInt64 {
        (UInt64(entryHeaderSize) + UInt64(nameLength) + 7) & ~7
    }

    /// The directory as QEMU writes it (bitmap_list_store): each entry, its
    /// name, zero padding; no extra data.
    static func encode(_ entries: [BitmapDirectoryEntry]) -> [UInt8] {
        var dir: [UInt8] = []
        for entry in entries {
            let name = Array(entry.name.utf8)
            var bytes = [UInt8](repeating: 0, count: Int(entrySize(nameLength: name.count)))
            bytes.setBE(entry.tableOffset, at: 0)
            bytes.setBE(entry.tableSize, at: 8)
            bytes.setBE(entry.flags, at: 12)
            bytes[16] = dirtyTrackingType
            bytes[17] = entry.granularityBits
            bytes.setBE(UInt16(name.count), at: 18)
            bytes.replaceSubrange(entryHeaderSize..<entryHeaderSize + name.count, with: name)
            dir += bytes
        }
        return dir
    }

    /// The directory's bitmaps as info shows them.
    static func decode(_ dir: [UInt8], count: UInt32, clusterSize: UInt64, virtualSize: UInt64) throws -> [BitmapInfo] {
        try entries(dir, count: count, clusterSize: clusterSize, virtualSize: virtualSize).map(\.info)
    }

    /// Walks the directory's entries, checking each as QEMU does; throws
    /// `invalidBitmaps` with QEMU's message for the first that fails.
    static func entries(_ dir: [UInt8], count: UInt32, clusterSize: UInt64,
                        virtualSize: UInt64) throws -> [BitmapDirectoryEntry] {
        var entries: [BitmapDirectoryEntry] = []
        var p = 0
        while p < dir.count {
            guard dir.count - p >= entryHeaderSize else { throw Qcow2Error.invalidBitmaps("Broken bitmap directory") }
            guard entries.count < Int(count) else {
                throw Qcow2Error.invalidBitmaps("More bitmaps found than specified in header extension")
            }
            let tableOffset = dir.be(UInt64.self, at: p)
            let tableSize = dir.be(UInt32.self, at: p + 8)
            let flags = dir.be(UInt32.self, at: p + 12)
            let type = dir[p + 16]
            let granularityBits = dir[p + 17]
            let nameSize = dir.be(UInt16.self, at: p + 18)
            let extraSize = dir.be(UInt32.self, at: p + 20)
            let entrySize = (UInt64(entryHeaderSize) + UInt64(extraSize) + UInt64(nameSize) + 7) & ~7
            guard entrySize <= UInt64(dir.count - p) else { throw Qcow2Error.invalidBitmaps("Broken bitmap directory") }
            guard extraSize == 0 else { throw Qcow2Error.invalidBitmaps("Bitmap extra data is not supported") }
            let nameStart = p + entryHeaderSize
            let name = String(decoding: dir[nameStart..<nameStart + Int(nameSize)], as: UTF8.self)

            var valid = tableSize != 0 && tableOffset != 0 && tableOffset % clusterSize == 0
                && tableSize <= maxTableSize && granularityRange.contains(granularityBits)
                && flags & ~(flagInUse | flagAuto) == 0 && nameSize <= maxNameSize && type == dirtyTrackingType
            if valid {
                // The table must be able to cover the disk, unless the bitmap
                // is marked in use (it may predate a resize).
                let physicalBytes = UInt64(tableSize) * clusterSize
                if physicalBytes > maxPhysicalSize {
                    valid = false
                } else if flags & flagInUse == 0 && virtualSize > (physicalBytes * 8) << UInt64(granularityBits) {
                    valid = false
                }
            }
            guard valid else { throw Qcow2Error.invalidBitmaps("Bitmap '\(name)' doesn't satisfy the constraints") }
            entries.append(BitmapDirectoryEntry(tableOffset: tableOffset, tableSize: tableSize, flags: flags,
                                                granularityBits: granularityBits, name: name))
            p += Int(entrySize)
        }
        guard entries.count == Int(count) else {
            throw Qcow2Error.invalidBitmaps("Less bitmaps found than specified in header extension")
        }
        return entries
    }
}
