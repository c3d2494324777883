// Persistent dirty bitmaps reference clusters too: the bitmap directory,
// each bitmap's table, and the clusters that table names
// (qcow2_check_bitmaps_refcounts). A directory or table QEMU cannot load
// fails the check with EINVAL, as in QEMU.

extension RefcountCheck {
    /// A bitmap table entry: reserved bits, the cluster's offset, and the
    /// "all ones" flag (valid only without an offset).
    private enum TableEntry {
        static let reserved: UInt64 = 0xff00_0000_0000_01fe
        static let offset: UInt64 = 0x00ff_ffff_ffff_fe00
        static let allOnes: UInt64 = 1
    }

    func countBitmapReferences() throws {
        // Bitmaps count only while the autoclear bit vouches for them.
        guard let bitmaps = image.layout.bitmaps, bitmaps.bitmapCount > 0 else { return }
        try countReference(offset: bitmaps.directoryOffset, size: bitmaps.directorySize)
        guard let tables = loadBitmapDirectory(bitmaps) else {
            result.corruptions += 1
            throw CheckFailure(errno: CheckErrno.invalid)
        }
        for table in tables {
            try countReference(offset: table.tableOffset, size: UInt64(table.tableSize) * 8)
            let bytes = try image.read(Int(table.tableSize) * 8, at: table.tableOffset)
            var offsets: [UInt64] = []
            for i in 0..<Int(table.tableSize) {
                let entry = bytes.be(UInt64.self, at: i * 8)
                guard isValidTableEntry(entry) else {
                    result.corruptions += 1
                    throw CheckFailure(errno: CheckErrno.invalid)
                }
                offsets.append(entry & TableEntry.offset)
            }
            for offset in offsets where offset != 0 {
                try countReference(offset: offset, size: geometry.clusterSize)
            }
        }
    }

    private func isValidTableEntry(_ entry: UInt64) -> Bool {
        if entry & TableEntry.reserved != 0 { return false }
        let offset = entry & TableEntry.offset
        if offset != 0 {
            if entry & TableEntry.allOnes != 0 { return false }
            if geometry.offsetIntoCluster(offset) != 0 { return false }
        }
        return true
    }

    /// The bitmaps' directory entries, or nil for a directory QEMU refuses
    /// (bitmap_list_load; what lies past the end of the file reads as zeroes).
    private func loadBitmapDirectory(_ ext: BitmapsExtension) -> [BitmapDirectoryEntry]? {
        guard ext.directorySize > 0, ext.directorySize <= Qcow2Limits.maxBitmapDirectorySize,
              let dir = try? image.read(Int(ext.directorySize), at: ext.directoryOffset) else { return nil }
        return try? BitmapDirectory.entries(dir, count: ext.bitmapCount, clusterSize: geometry.clusterSize,
                                            virtualSize: image.header.size & ~511)
    }
}
