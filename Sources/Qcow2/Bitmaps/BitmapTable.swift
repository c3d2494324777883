// A bitmap's table (docs/interop/qcow2.txt, "Bitmap table"): one 8-byte
// entry per cluster of serialized bits. An entry is 0 (all bits of that
// cluster clear), 1 (all set: QEMU reads it but never writes it), or the
// offset of a cluster holding the bits. QEMU's bitmap_table_load,
// load_bitmap_data and store_bitmap_data.

enum BitmapTableEntry {
    static let reserved: UInt64 = 0xff00_0000_0000_01fe
    static let offsetMask: UInt64 = 0x00ff_ffff_ffff_fe00
    static let allOnes: UInt64 = 1

    /// check_table_entry: reserved bits clear; an offset is aligned and
    /// comes without the all-ones flag.
    static func isValid(_ entry: UInt64, clusterSize: UInt64) -> Bool {
        if entry & reserved != 0 { return false }
        let offset = entry & offsetMask
        if offset != 0 && (entry & allOnes != 0 || offset % clusterSize != 0) { return false }
        return true
    }
}

enum BitmapTable {
    /// Guest bytes one cluster of bits covers (bytes_covered_by_bitmap_cluster).
    static func bytesPerCluster(granularity: UInt64, clusterSize: UInt64) -> UInt64 {
        granularity * clusterSize * 8
    }

    /// The table size QEMU gives a bitmap of this size and granularity.
    static func entries(for bitmap: DirtyBitmap, clusterSize: UInt64) -> UInt64 {
        divideRoundingUp(bitmap.serializedSize, clusterSize)
    }

    /// `count` bytes at `offset`; what lies past the end of the file reads
    /// as zeroes, as QEMU's reads do.
    static func readPadded(file: BlockFile, count: Int, at offset: UInt64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        _ = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
        return bytes
    }

    /// Reads a table (at most BitmapDirectory.maxTableSize entries, checked
    /// with the directory).
    static func read(file: BlockFile, offset: UInt64, entries: UInt32) throws -> [UInt64] {
        let bytes = try readPadded(file: file, count: Int(entries) * 8, at: offset)
        var table: [UInt64] = []
        table.reserveCapacity(Int(entries))
        for i in 0..<Int(entries) { table.append(bytes.be(UInt64.self, at: i * 8)) }
        return table
    }

    /// Fills `bitmap` from its table (load_bitmap_data). Throws EINVAL-kind
    /// `invalidBitmaps` errors with QEMU's messages.
    static func load(into bitmap: inout DirtyBitmap, entry: BitmapDirectoryEntry, file: BlockFile,
                     clusterSize: UInt64) throws {
        let table = try read(file: file, offset: entry.tableOffset, entries: entry.tableSize)
        guard table.allSatisfy({ BitmapTableEntry.isValid($0, clusterSize: clusterSize) }) else {
            throw Qcow2Error.invalidBitmaps(
                "Could not read bitmap_table table from image for bitmap '\(entry.name)': Invalid argument")
        }
        guard UInt64(table.count) == entries(for: bitmap, clusterSize: clusterSize) else {
            throw Qcow2Error.invalidBitmaps("Could not read bitmap '\(entry.name)' from image: Invalid argument")
        }
        let bitsPerCluster = clusterSize * 8
        for (i, value) in table.enumerated() {
            let first = UInt64(i) * bitsPerCluster
            let offset = value & BitmapTableEntry.offsetMask
            if offset == 0 {
                if value & BitmapTableEntry.allOnes != 0 {
                    bitmap.setBits(first, through: min(bitmap.bitCount, first + bitsPerCluster) - 1)
                }
                continue
            }
            bitmap.deserialize(try readPadded(file: file, count: Int(clusterSize), at: offset), fromBit: first)
        }
    }
}
