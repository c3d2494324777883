// Dropping refcount blocks that count nothing but possibly themselves, after
// a shrink freed what they counted (QEMU 7.2's qcow2_shrink_reftable):
//  1. each block is read (through the cache) and found unused when all its
//     refcounts are zero, its own entry aside if it describes itself;
//  2. the whole table is written without them, synced;
//  3. only then are they freed (their refcount dropped while the table in
//     memory still names them) and forgotten.
// The table keeps its size and place. A crash before step 2 changes
// nothing; after it, the blocks leak (check -r leaks reclaims them).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension RefcountAllocator {
    func dropUnusedRefcountBlocks() throws {
        var kept = table
        for (i, entry) in table.enumerated() {
            let blockOffset = entry & Qcow2EntryMask.refcountTableOffset
            guard blockOffset != 0 else {
                kept[i] = 0
                continue
            }
            let block = try blocks.get(blockOffset)
            let bytes = block.readOnlyBytes
            // A block that counts itself does not keep itself alive.
            let ownIndex: Int? = Int((blockOffset >> clusterBits) >> refblockBits) == i
                ? Int((blockOffset >> clusterBits) & (refblockSize - 1)) : nil
            var unused = true
            for index in 0..<Int(refblockSize) where index != ownIndex {
                if RefcountCoding.get(bytes, index: index, width: width) != 0 {
                    unused = false
                    break
                }
            }
            if unused { kept[i] = 0 }
        }
        let dropped = table.indices.filter { table[$0] != 0 && kept[$0] == 0 }
        guard !dropped.isEmpty else {
            // QEMU writes the table back unchanged; the bytes are the same.
            try file.write(RefcountTable(entries: table).encode(), at: tableOffset)
            if syncsWrites { try file.flush() }
            return
        }
        do {
            try file.write(RefcountTable(entries: kept).encode(), at: tableOffset)
            if syncsWrites { try file.flush() }
        } catch {
            // The table on disk may be half written: stop using those blocks.
            for i in dropped { forgetRefcountBlock(at: i) }
            throw error
        }
        var failure: Error?
        for i in dropped {
            if failure == nil {
                do {
                    try freeClusters(offset: table[i] & Qcow2EntryMask.refcountTableOffset, length: clusterSize, type: .always)
                } catch {
                    failure = error
                }
            }
            forgetRefcountBlock(at: i)
        }
        if let failure { throw failure }
    }
}
