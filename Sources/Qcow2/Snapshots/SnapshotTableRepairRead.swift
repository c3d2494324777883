// The snapshot table as the check reads it: QEMU's qcow2_do_read_snapshots
// in its repair mode. Opening an image refuses any flaw (SnapshotTable.read);
// the check must get past them to report and fix them: what lies past the
// end of the file reads as zeroes (the caller's `read` does that), entries
// are taken in QEMU's order (the whole entry read, then the table's size
// checked), and the ID and name end at their first NUL byte, as QEMU keeps
// them as C strings and writes them back so. With `fixing`, oversized extra
// data is cut to the limit and overhanging entries are dropped; otherwise
// either flaw ends the read.

extension SnapshotTable {
    /// A flaw the check reports, or with `fixing` repairs.
    enum RepairReadFlaw: Error {
        /// Entry `entry` announces more extra data than QEMU keeps.
        case extraDataTooLarge(entry: Int, size: UInt32)
        /// The table grows too big at entry `entry`; `overhanging` entries
        /// from there on.
        case tooBig(entry: Int, overhanging: Int)
    }

    /// Reads `count` entries from `offset`; `read(length, offset)` reads
    /// bytes (zeroes past the end of the file). `repaired` hears of each
    /// flaw fixed. The table's length (snapshots_size) reaches the end of
    /// the last entry kept, skipped extra data included.
    static func readForRepair(count: UInt32, offset tableOffset: UInt64, fixing: Bool,
                              read: (Int, UInt64) throws -> [UInt8],
                              repaired: (RepairReadFlaw) -> Void) throws -> SnapshotTable {
        var table = SnapshotTable()
        table.offset = tableOffset
        var offset = tableOffset
        var tableLength: UInt64 = 0
        for i in 0..<Int(count) {
            let entryStart = offset
            tableLength = alignUp(tableLength, 8) ?? .max
            offset = alignUp(offset, 8) ?? .max
            let fixed = try read(SnapshotEntry.headerSize, offset)
            offset &+= UInt64(SnapshotEntry.headerSize)
            let lengths = SnapshotEntry.Lengths(fixed: fixed)
            var extraSize = lengths.extraData

            let extraEnd = offset &+ UInt64(extraSize)
            if extraSize > Qcow2Limits.maxSnapshotExtraData {
                let flaw = RepairReadFlaw.extraDataTooLarge(entry: i, size: extraSize)
                guard fixing else { throw flaw }
                repaired(flaw)
                extraSize = Qcow2Limits.maxSnapshotExtraData
            }
            // The extra data as far as it is kept (the rest is skipped).
            let extra = try read(Int(extraSize), offset)
            offset = extraEnd
            let id = try read(lengths.id, offset)
            offset &+= UInt64(lengths.id)
            let name = try read(lengths.name, offset)
            offset &+= UInt64(lengths.name)

            tableLength += UInt64(SnapshotEntry.headerSize) + UInt64(extraSize) + UInt64(lengths.id) + UInt64(lengths.name)
            if tableLength > Qcow2Limits.maxSnapshotTableBytes || offset &- tableOffset > UInt64(Int32.max) {
                let flaw = RepairReadFlaw.tooBig(entry: i, overhanging: Int(count) - i)
                guard fixing else { throw flaw }
                repaired(flaw)
                offset = entryStart
                break
            }
            table.entries.append(SnapshotEntry(fixed: fixed, extraData: extra[...],
                                               idBytes: Array(id.prefix { $0 != 0 }),
                                               nameBytes: Array(name.prefix { $0 != 0 })))
        }
        table.byteLength = offset &- tableOffset
        return table
    }
}
