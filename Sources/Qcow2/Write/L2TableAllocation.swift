// Finding the L2 table a write goes through, allocating it when missing and
// copying it when a snapshot shares it (QEMU's get_cluster_table and
// l2_allocate), and writing single L1 entries.
//
// Ordering for a new L2 table (crash safety):
//  1. its cluster is allocated and the refcount blocks are flushed;
//  2. the table (zeroes, or the shared table's entries) is written and
//     flushed;
//  3. only then does the L1 entry point to it (written and synced);
//  4. a shared table's refcount is dropped last.
// A crash in between leaks a cluster at worst; it never leaves an L1 entry
// pointing at a table that is not on disk.

extension Qcow2Writer {
    /// The L2 table mapping `guestOffset` and the entry's index in it,
    /// allocating or copying the table first when the L1 entry is not
    /// COPIED (get_cluster_table). Grows the L1 table if it is too short.
    func clusterTable(for guestOffset: UInt64) throws -> (table: L2Table, index: Int) {
        let index = l1Index(guestOffset)
        if index >= map.l1.count { try growL1Table(minEntries: UInt64(index) + 1, exact: false) }
        let l1Entry = map.l1[index]
        let l2Offset = l1Entry & Qcow2EntryMask.offset
        guard offsetInCluster(l2Offset) == 0 else {
            throw Qcow2Error.corruptMetadata("L2 table offset \(hex(l2Offset)) unaligned (L1 index: \(hex(index)))")
        }
        if l1Entry & Qcow2EntryMask.copied == 0 {
            try allocateL2Table(l1Index: index)
            // The shared table loses this reference (QEMU ignores failures).
            if l2Offset != 0 { freeClusters(offset: l2Offset, length: clusterSize, type: .other) }
        }
        let table = try map.l2Table(at: map.l1[index] & Qcow2EntryMask.offset, l1Index: UInt64(index))
        return (table, l2Index(guestOffset))
    }

    /// l2_allocate: a new table for L1 entry `l1Index`, empty or a copy of
    /// the table the entry names now.
    private func allocateL2Table(l1Index index: Int) throws {
        let oldEntry = map.l1[index]
        let newOffset = try allocator.allocateClusters(clusterSize)
        do {
            guard newOffset != 0 else {
                throw Qcow2Error.corruptMetadata("Preventing invalid allocation of L2 table at offset 0")
            }
            try allocator.blocks.flush()

            let oldOffset = oldEntry & Qcow2EntryMask.offset
            var copy: [UInt8]?
            if oldOffset != 0 {
                let old = try map.l2Table(at: oldOffset, l1Index: UInt64(index))
                copy = Array(old.readOnlyBytes)
            }
            let table = try map.l2Tables.getEmpty(newOffset)
            if let copy { copy.withUnsafeBytes { table.bytes.copyMemory(from: $0) } }
            try map.l2Tables.flush()

            setL1Entry(index, newOffset | Qcow2EntryMask.copied)
            try writeL1Entry(index)
        } catch {
            if map.l1[index] != oldEntry { setL1Entry(index, oldEntry) }
            if newOffset != 0 { freeClusters(offset: newOffset, length: clusterSize, type: .always) }
            throw error
        }
    }

    /// qcow2_write_l1_entry: the one entry (the file takes byte-granular
    /// writes, so no neighbours are rewritten), checked and synced.
    func writeL1Entry(_ index: Int) throws {
        let offset = header.l1TableOffset + UInt64(index) * 8
        try checkOverlap(offset: offset, length: 8, ignoring: [.activeL1])
        var bytes = [UInt8](repeating: 0, count: 8)
        bytes.setBE(map.l1[index], at: 0)
        try file.write(bytes, at: offset)
        try file.flush()
    }
}
