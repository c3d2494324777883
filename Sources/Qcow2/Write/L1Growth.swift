// Growing the active L1 table (QEMU's qcow2_grow_l1_table), for writes past
// its end and for resizing. The table only ever moves:
//  1. a new table, the old entries followed by zeroes, is allocated (its
//     refcounts flushed), checked against other metadata, written and synced;
//  2. the header is pointed at it (l1_size and l1_table_offset, synced);
//  3. the old table's clusters are freed.
// Until step 2 the old table stays valid; after it the new one is complete.

extension Qcow2Writer {
    /// Makes the L1 table at least `minEntries` long: exactly that with
    /// `exact`, otherwise growing by half at a time, as QEMU does.
    func growL1Table(minEntries: UInt64, exact: Bool) throws {
        let oldSize = UInt64(map.l1.count)
        guard minEntries > oldSize else { return }
        // QEMU checks against INT_MAX bytes before sizing, and against its
        // 32 MiB limit after.
        guard minEntries <= UInt64(Int32.max) / 8 else { throw FileTooLarge() }
        var newSize: UInt64
        if exact {
            newSize = minEntries
        } else {
            newSize = max(oldSize, 1)
            while minEntries > newSize { newSize = divideRoundingUp(newSize * 3, 2) }
        }
        guard newSize <= Qcow2Limits.maxL1TableBytes / 8 else { throw FileTooLarge() }

        let oldOffset = header.l1TableOffset
        var newTable = map.l1
        newTable += [UInt64](repeating: 0, count: Int(newSize - oldSize))
        let bytes = newSize * 8
        let newOffset = try allocator.allocateClusters(bytes)
        do {
            try allocator.blocks.flush()
            // The header does not name these clusters yet: nothing else may be there.
            try checkOverlap(offset: newOffset, length: bytes)
            var encoded = [UInt8](repeating: 0, count: Int(bytes))
            for (i, entry) in newTable.enumerated() where entry != 0 { encoded.setBE(entry, at: i * 8) }
            try file.write(encoded, at: newOffset)
            try file.flush()
            try writeL1TableLocation(offset: newOffset, entries: UInt32(newSize))
        } catch {
            freeClusters(offset: newOffset, length: bytes, type: .other)
            throw error
        }
        map.l1 = newTable
        rebuildOverlapIndex()
        freeClusters(offset: oldOffset, length: oldSize * 8, type: .other)
    }
}
