// Where the internal snapshots' metadata lies (docs/interop/qcow2.txt,
// "Snapshots"): the snapshot table itself and each snapshot's L1 table. The
// write path needs no more than that: these areas must never be overwritten
// (QEMU's overlap check), and a refcount rebuild must count their clusters
// and the L2 tables and data they reference. Entries are not interpreted
// further (names, VM state and dates are the snapshot code's business).

struct SnapshotTableLocations: Sendable {
    struct Snapshot: Sendable {
        var l1TableOffset: UInt64
        /// Entries in the snapshot's L1 table.
        var l1Size: UInt32
    }

    /// Where the table starts, and its length in bytes (QEMU's snapshots_size).
    var tableOffset: UInt64 = 0
    var tableLength: UInt64 = 0
    var snapshots: [Snapshot] = []

    /// Fixed part of an entry: L1 offset (8), L1 size (4), id length (2),
    /// name length (2), date (4 + 4), VM clock (8), VM state size (4), extra
    /// data size (4).
    static let entryHeaderSize = 40

    init() {}

    /// Reads the table the header names. Entry sizes come from the file, so
    /// each is bounded: extra data to QEMU's 1 KiB, names by their 16-bit
    /// length fields, the whole table by QEMU's limit.
    init(file: BlockFile, header: Qcow2Header) throws {
        guard header.snapshotCount > 0 else { return }
        tableOffset = header.snapshotsOffset
        var offset = header.snapshotsOffset
        for index in 0..<Int(header.snapshotCount) {
            let fixed = try file.readExactly(Self.entryHeaderSize, at: offset, step: "reading snapshot table entry \(index)")
            let l1Offset = fixed.be(UInt64.self, at: 0)
            let l1Size = fixed.be(UInt32.self, at: 8)
            let idLength = UInt64(fixed.be(UInt16.self, at: 12))
            let nameLength = UInt64(fixed.be(UInt16.self, at: 14))
            let extraLength = UInt64(fixed.be(UInt32.self, at: 36))
            guard extraLength <= UInt64(Qcow2Limits.maxSnapshotExtraData) else {
                throw Qcow2Error.corruptMetadata("Too much extra metadata in snapshot table entry \(index)")
            }
            let entryLength = UInt64(Self.entryHeaderSize) + extraLength + idLength + nameLength
            offset = try checkedAdd(offset, (entryLength + 7) & ~7, "snapshot table entry \(index)")
            guard offset - tableOffset <= Qcow2Limits.maxSnapshotTableBytes else {
                throw Qcow2Error.corruptMetadata("Snapshot table too large")
            }
            snapshots.append(Snapshot(l1TableOffset: l1Offset, l1Size: l1Size))
        }
        tableLength = offset - tableOffset
    }
}
