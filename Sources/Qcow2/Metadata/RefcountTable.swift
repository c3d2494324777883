// The refcount table: 64-bit big-endian offsets of refcount blocks (bits
// 9...63; zero means "no block, all refcounts zero"), and how much refcount
// metadata an image of a given size needs.

package struct RefcountTable: Equatable, Sendable {
    /// Entries as stored (offset bits plus any reserved low bits).
    package var entries: [UInt64]

    package init(entries: [UInt64]) { self.entries = entries }

    /// A table of `clusters` clusters, all entries zero.
    package init(clusters: UInt64, clusterSize: UInt64) {
        entries = [UInt64](repeating: 0, count: Int(clusters * clusterSize / 8))
    }

    /// Decodes a table read from disk (length a multiple of 8).
    package init(bytes: [UInt8]) {
        entries = (0..<(bytes.count / 8)).map { bytes.be(UInt64.self, at: $0 * 8) }
    }

    package var count: Int { entries.count }

    /// The block offset of entry `index`, 0 if unallocated or out of range.
    package func blockOffset(at index: UInt64) -> UInt64 {
        index < UInt64(entries.count) ? entries[Int(index)] & Qcow2EntryMask.refcountTableOffset : 0
    }

    package func encode() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: entries.count * 8)
        for (i, e) in entries.enumerated() where e != 0 { out.setBE(e, at: i * 8) }
        return out
    }

    /// Encodes entries `range` only (for writing part of a table in place).
    package func encode(_ range: Range<Int>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: range.count * 8)
        for i in range where entries[i] != 0 { out.setBE(entries[i], at: (i - range.lowerBound) * 8) }
        return out
    }

    /// Index of the last entry naming a block (0 if none): QEMU's
    /// max_refcount_table_index.
    package var lastUsedIndex: Int {
        var i = entries.count - 1
        while i > 0 && entries[i] & Qcow2EntryMask.refcountTableOffset == 0 { i -= 1 }
        return max(i, 0)
    }
}

package enum RefcountMetadata {
    /// Refcount blocks and table clusters needed so that `clusters` clusters,
    /// plus the refcount metadata itself, are all covered: the fixed point of
    /// blocks = ceil((clusters + blocks + table) / entries per block). With
    /// `generousIncrease`, room for a table half again as large is added, as
    /// QEMU does when it grows a table in use. Returns (bytes, block count).
    package static func size(
        clusters: UInt64, clusterSize: UInt64, width: RefcountWidth, generousIncrease: Bool
    ) -> (bytes: UInt64, refblockCount: UInt64) {
        let blocksPerTableCluster = clusterSize / 8
        let refcountsPerBlock = width.entriesPerBlock(clusterSize: clusterSize)
        var clusters = clusters
        var generous = generousIncrease
        var table: UInt64 = 0
        var blocks: UInt64 = 0
        var last: UInt64 = 0
        var n: UInt64 = 0
        repeat {
            last = n
            blocks = divideRoundingUp(clusters + table + blocks, refcountsPerBlock)
            table = divideRoundingUp(blocks, blocksPerTableCluster)
            n = clusters + blocks + table
            if n == last && generous {
                clusters += divideRoundingUp(table, 2)
                n = 0
                generous = false
            }
        } while n != last
        return ((blocks + table) * clusterSize, blocks)
    }
}
