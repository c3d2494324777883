// Taking an internal snapshot (QEMU 7.2's qcow2_snapshot_create):
//  1. the active L1 table is copied, COPIED flags and all, to new clusters
//     (checked against other metadata first);
//  2. every cluster the active tree references gains a reference, and the
//     active L1 and L2 entries lose their COPIED flags (now shared); all of
//     it flushed (SnapshotRefcountUpdate.swift);
//  3. the snapshot table with the new entry replaces the old one
//     (SnapshotTableWrite.swift), which is what makes the snapshot exist.
// A failure after step 1 leaks the copy and the references, as in QEMU;
// `check -r leaks` gets them back. Guest writes afterwards copy shared
// clusters before changing them (ClusterAllocation.swift, handle_copied).

extension Qcow2Writer {
    /// Adds a snapshot of the active state, named `name` (cut to QEMU's 255
    /// bytes), with the next free ID; returns its entry.
    func createSnapshot(name: String, dateSeconds: UInt32, dateNanoseconds: UInt32,
                              vmClockNanoseconds: UInt64 = 0, icount: UInt64? = 0) throws -> SnapshotEntry {
        guard snapshots.entries.count < Int(Qcow2Limits.maxSnapshots) else { throw SnapshotError.tooManySnapshots }
        var entry = SnapshotEntry(
            l1TableOffset: 0, l1Size: UInt32(map.l1.count), id: snapshots.nextID, name: "",
            dateSeconds: dateSeconds, dateNanoseconds: dateNanoseconds, vmClockNanoseconds: vmClockNanoseconds,
            vmStateSize: 0, diskSize: imageSize, icount: icount)
        entry.nameBytes = Array(name.utf8.prefix { $0 != 0 }.prefix(SnapshotEntry.maxNameBytes))

        let l1Bytes = UInt64(map.l1.count) * 8
        entry.l1TableOffset = try allocator.allocateClusters(l1Bytes)
        try checkOverlap(offset: entry.l1TableOffset, length: l1Bytes)
        var copy = [UInt8](repeating: 0, count: Int(l1Bytes))
        for (i, l1Entry) in map.l1.enumerated() where l1Entry != 0 { copy.setBE(l1Entry, at: i * 8) }
        try file.write(copy, at: entry.l1TableOffset)

        try updateSnapshotRefcount(l1Offset: header.l1TableOffset, l1Size: map.l1.count, addend: 1)
        var table = snapshots
        table.entries.append(entry)
        try writeSnapshotTable(table)
        return entry
    }
}
