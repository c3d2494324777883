// Persistent dirty bitmaps reference clusters too: the bitmap directory,
// each bitmap's table, and the clusters that table names
// (qcow2_check_bitmaps_refcounts). A directory or table QEMU cannot load
// fails the check with EINVAL, as in QEMU.

extension RefcountCheck {
    /// Sizes of a bitmap directory entry and QEMU's limits on bitmaps.
    private enum BitmapLimit {
        static let directoryEntrySize = 24
        static let maxTableSize: UInt64 = 0x800_0000
        static let maxPhysicalSize: UInt64 = 0x2000_0000
        static let minGranularityBits: UInt8 = 9
        static let maxGranularityBits: UInt8 = 31
        static let maxNameSize: UInt16 = 1023
        static let reservedFlags: UInt32 = 0xffff_fffc
        static let dirtyTrackingType: UInt8 = 1
        static let tableEntryReserved: UInt64 = 0xff00_0000_0000_01fe
        static let tableEntryOffset: UInt64 = 0x00ff_ffff_ffff_fe00
        static let tableEntryAllOnes: UInt64 = 1
    }

    private struct BitmapTable {
        var offset: UInt64
        var size: UInt32
    }

    func countBitmapReferences() throws {
        // Bitmaps count only while the autoclear bit vouches for them.
        guard let bitmaps = image.layout.bitmaps, bitmaps.bitmapCount > 0 else { return }
        try countReference(offset: bitmaps.directoryOffset, size: bitmaps.directorySize)
        guard let tables = try loadBitmapDirectory(bitmaps) else {
            result.corruptions += 1
            throw CheckFailure(errno: CheckErrno.invalid)
        }
        for table in tables {
            try countReference(offset: table.offset, size: UInt64(table.size) * 8)
            let bytes = try image.read(Int(table.size) * 8, at: table.offset)
            var offsets: [UInt64] = []
            for i in 0..<Int(table.size) {
                let entry = bytes.be(UInt64.self, at: i * 8)
                guard isValidTableEntry(entry) else {
                    result.corruptions += 1
                    throw CheckFailure(errno: CheckErrno.invalid)
                }
                offsets.append(entry & BitmapLimit.tableEntryOffset)
            }
            for offset in offsets where offset != 0 {
                try countReference(offset: offset, size: geometry.clusterSize)
            }
        }
    }

    private func isValidTableEntry(_ entry: UInt64) -> Bool {
        if entry & BitmapLimit.tableEntryReserved != 0 { return false }
        let offset = entry & BitmapLimit.tableEntryOffset
        if offset != 0 {
            if entry & BitmapLimit.tableEntryAllOnes != 0 { return false }
            if geometry.offsetIntoCluster(offset) != 0 { return false }
        }
        return true
    }

    /// The bitmaps' tables, or nil for a directory QEMU refuses (bitmap_list_load).
    private func loadBitmapDirectory(_ ext: BitmapsExtension) throws -> [BitmapTable]? {
        guard ext.directorySize > 0, ext.directorySize <= Qcow2Limits.maxBitmapDirectorySize else { return nil }
        guard let dir = try? image.read(Int(ext.directorySize), at: ext.directoryOffset) else { return nil }
        var tables: [BitmapTable] = []
        var position = 0
        while position < dir.count {
            guard position + BitmapLimit.directoryEntrySize <= dir.count else { return nil }
            guard tables.count < Int(ext.bitmapCount) else { return nil }
            let tableOffset = dir.be(UInt64.self, at: position)
            let tableSize = dir.be(UInt32.self, at: position + 8)
            let flags = dir.be(UInt32.self, at: position + 12)
            let type = dir[position + 16]
            let granularity = dir[position + 17]
            let nameSize = dir.be(UInt16.self, at: position + 18)
            let extraSize = dir.be(UInt32.self, at: position + 20)
            let entrySize = (BitmapLimit.directoryEntrySize + Int(nameSize) + Int(extraSize) + 7) & ~7
            guard position + entrySize <= dir.count, extraSize == 0 else { return nil }
            let physicalBytes = UInt64(tableSize) * geometry.clusterSize
            let valid = tableSize != 0 && tableOffset != 0 && geometry.offsetIntoCluster(tableOffset) == 0
                && UInt64(tableSize) <= BitmapLimit.maxTableSize
                && (BitmapLimit.minGranularityBits...BitmapLimit.maxGranularityBits).contains(granularity)
                && flags & BitmapLimit.reservedFlags == 0 && nameSize <= BitmapLimit.maxNameSize
                && type == BitmapLimit.dirtyTrackingType
                && physicalBytes <= BitmapLimit.maxPhysicalSize
                && image.header.size & ~511 <= (physicalBytes * 8) << UInt64(granularity)
            guard valid else { return nil }
            tables.append(BitmapTable(offset: tableOffset, size: tableSize))
            position += entrySize
        }
        guard tables.count == Int(ext.bitmapCount), position == dir.count else { return nil }
        return tables
    }
}
