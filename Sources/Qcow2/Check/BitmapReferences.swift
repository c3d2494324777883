// Persistent dirty bitmaps reference clusters too: the bitmap directory,
// each bitmap's table, and the clusters that table names
// (qcow2_check_bitmaps_refcounts). A directory or table QEMU cannot load
// fails the check with EINVAL, as in QEMU.

extension RefcountCheck {
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
                guard BitmapTableEntry.isValid(entry, clusterSize: geometry.clusterSize) else {
                    result.corruptions += 1
                    throw CheckFailure(errno: CheckErrno.invalid)
                }
                offsets.append(entry & BitmapTableEntry.offsetMask)
            }
            for offset in offsets where offset != 0 {
                try countReference(offset: offset, size: geometry.clusterSize)
            }
        }
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
