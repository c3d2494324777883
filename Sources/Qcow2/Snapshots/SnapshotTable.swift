// The internal snapshot table: `snapshotCount` variable-length entries from
// `snapshotsOffset`, each starting 8-byte aligned. Reading is bounded before
// anything is allocated: the entry count by Qcow2Limits.maxSnapshots (checked
// with the header), each entry's extra data by maxSnapshotExtraData, the whole
// table by maxSnapshotTableBytes, and every byte must lie inside the file.

package struct SnapshotTable: Equatable, Sendable {
    package var entries: [SnapshotEntry]
    /// Where the table starts in the file (the header's snapshots_offset).
    package var offset: UInt64
    /// Bytes from the table's start to the end of its last entry (QEMU's
    /// snapshots_size: the final entry is not padded).
    package var byteLength: UInt64

    package init(entries: [SnapshotEntry] = [], byteLength: UInt64 = 0) {
        self.entries = entries
        offset = 0
        self.byteLength = byteLength
    }

    /// Reads the table an open image's header points to.
    package static func read(from image: Qcow2Image) throws -> SnapshotTable {
        try read(file: image.file, offset: image.header.snapshotsOffset, count: image.header.snapshotCount)
    }

    package static func read(file: BlockFile, offset: UInt64, count: UInt32) throws -> SnapshotTable {
        let fileSize = try file.size()
        return try decode(count: count, fileSize: fileSize, tableOffset: offset) { start, length in
            try file.readExactly(length, at: start, step: "reading snapshot table")
        }
    }

    /// Decodes a table held in memory, as if it started at offset 0 of a file
    /// consisting of `bytes`.
    package static func decode(_ bytes: [UInt8], count: UInt32) throws -> SnapshotTable {
        try decode(count: count, fileSize: UInt64(bytes.count), tableOffset: 0) { start, length in
            Array(bytes[Int(start)..<Int(start) + length])
        }
    }

    /// What the metadata overlap check guards: the table itself and each
    /// snapshot's L1 table.
    var area: MetadataOverlap.Area { (offset, byteLength) }
    var l1TableAreas: [MetadataOverlap.Area] { entries.map { ($0.l1TableOffset, UInt64($0.l1Size) * 8) } }

    /// The decoder, over a reader of `length` bytes at an absolute offset
    /// that has been checked to lie inside `fileSize`.
    static func decode(
        count: UInt32, fileSize: UInt64, tableOffset: UInt64,
        read: (UInt64, Int) throws -> [UInt8]
    ) throws -> SnapshotTable {
        guard count <= Qcow2Limits.maxSnapshots else { throw Qcow2Error.tooManySnapshots(count) }
        var entries: [SnapshotEntry] = []
        entries.reserveCapacity(Int(count))
        var length: UInt64 = 0 // bytes from the table start to the current entry's end
        for index in 0..<Int(count) {
            length = (length + 7) & ~7
            let start = try checkedAdd(tableOffset, length, "snapshot table entry \(index)")
            func within(_ bytes: UInt64) throws -> UInt64 {
                let end = try checkedAdd(start, bytes, "snapshot table entry \(index)")
                guard end <= fileSize else { throw Qcow2Error.snapshotTableTruncated(entry: index) }
                return end
            }

            _ = try within(UInt64(SnapshotEntry.headerSize))
            let h = try read(start, SnapshotEntry.headerSize)
            let lengths = SnapshotEntry.Lengths(fixed: h)
            let (idSize, nameSize, extraSize) = (lengths.id, lengths.name, lengths.extraData)
            guard extraSize <= Qcow2Limits.maxSnapshotExtraData else {
                throw Qcow2Error.snapshotExtraDataTooLarge(entry: index)
            }
            // Everything after the fixed part is at most 1 KiB + 2 * 64 KiB.
            let tailSize = Int(extraSize) + idSize + nameSize
            let entryLength = UInt64(SnapshotEntry.headerSize + tailSize)
            length += entryLength
            guard length <= Qcow2Limits.maxSnapshotTableBytes else { throw Qcow2Error.snapshotTableTooBig }
            _ = try within(entryLength)
            let tail = try read(start + UInt64(SnapshotEntry.headerSize), tailSize)

            let extraEnd = Int(extraSize)
            let entry = SnapshotEntry(
                fixed: h, extraData: tail[..<extraEnd], idBytes: Array(tail[extraEnd..<extraEnd + idSize]),
                nameBytes: Array(tail[(extraEnd + idSize)...]))
            entries.append(entry)
        }
        var table = SnapshotTable(entries: entries, byteLength: length)
        table.offset = tableOffset
        return table
    }

    /// The table as QEMU writes it: entries 8-byte aligned, zero padding
    /// between them, none after the last.
    package func encode(virtualSize: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        for (start, bytes) in encodedEntries(virtualSize: virtualSize).entries {
            out += [UInt8](repeating: 0, count: Int(start) - out.count)
            out += bytes
        }
        return out
    }

    /// Each entry as QEMU writes it with where it starts in the table (8-byte
    /// aligned), and the table's length (qcow2_write_snapshots, which writes
    /// the entries alone: padding keeps what the clusters held).
    func encodedEntries(virtualSize: UInt64) -> (entries: [(start: UInt64, bytes: [UInt8])], byteLength: UInt64) {
        var encoded: [(start: UInt64, bytes: [UInt8])] = []
        var length: UInt64 = 0
        for entry in entries {
            let start = alignUp(length, 8) ?? .max
            let bytes = entry.encode(virtualSize: virtualSize)
            length = start + UInt64(bytes.count)
            encoded.append((start, bytes))
        }
        return (encoded, length)
    }
}
