// L2 tables in memory: decoded once from disk, kept in a bounded cache with
// least-recently-used eviction. The cache itself is not thread-safe; its
// owner (`ClusterMap`) holds it under a lock. Tables are immutable, so a
// reader can keep using one after the lock is released, even if it is
// evicted meanwhile.

/// One L2 table, decoded to native integers. With extended L2 entries each
/// entry is two words: the descriptor, then the subcluster bitmap.
public final class L2Table: @unchecked Sendable {
    /// Host offset of the table.
    public let offset: UInt64
    let words: [UInt64]
    let wordsPerEntry: Int

    init(offset: UInt64, bigEndianBytes bytes: UnsafeRawBufferPointer, extendedL2: Bool) {
        self.offset = offset
        wordsPerEntry = extendedL2 ? 2 : 1
        let count = bytes.count / 8
        words = [UInt64](unsafeUninitializedCapacity: count) { out, initialized in
            for i in 0..<count {
                out[i] = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
            }
            initialized = count
        }
    }

    public var entryCount: Int { words.count / wordsPerEntry }

    @inline(__always) func entry(_ index: Int) -> UInt64 { words[index * wordsPerEntry] }
    /// The subcluster bitmap; zero for standard entries.
    @inline(__always) func bitmap(_ index: Int) -> UInt64 {
        wordsPerEntry == 2 ? words[index * 2 + 1] : 0
    }
}

/// A fixed-capacity LRU map from table offset to table. Slots live in arrays
/// linked by index, so lookups and evictions allocate nothing.
struct L2Cache {
    let capacity: Int
    private var slotByOffset: [UInt64: Int] = [:]
    private var tables: [L2Table?]
    private var previous: [Int]
    private var next: [Int]
    /// Most recently used slot, and least recently used slot (-1 when empty).
    private var head = -1
    private var tail = -1

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        tables = []
        previous = []
        next = []
        slotByOffset.reserveCapacity(min(capacity, 4096))
    }

    var count: Int { slotByOffset.count }

    /// The cached table at `offset`, marked most recently used.
    mutating func lookup(_ offset: UInt64) -> L2Table? {
        guard let slot = slotByOffset[offset] else { return nil }
        moveToFront(slot)
        return tables[slot]
    }

    /// Adds a table, evicting the least recently used one when full. If a
    /// table at the same offset is already cached (another thread loaded it
    /// first), that one is kept and returned.
    @discardableResult
    mutating func insert(_ table: L2Table) -> L2Table {
        if let existing = lookup(table.offset) { return existing }
        let slot: Int
        if tables.count < capacity {
            slot = tables.count
            tables.append(table)
            previous.append(-1)
            next.append(-1)
        } else {
            slot = tail
            unlink(slot)
            if let old = tables[slot] { slotByOffset[old.offset] = nil }
            tables[slot] = table
        }
        slotByOffset[table.offset] = slot
        pushFront(slot)
        return table
    }

    /// Drops the table at `offset`, if cached (for writers replacing a table).
    mutating func remove(_ offset: UInt64) {
        guard let slot = slotByOffset.removeValue(forKey: offset) else { return }
        unlink(slot)
        tables[slot] = nil
        // Reuse the slot first: put it at the cold end.
        if tail == -1 { head = slot; tail = slot; previous[slot] = -1; next[slot] = -1 } else {
            previous[slot] = tail; next[slot] = -1; next[tail] = slot; tail = slot
        }
    }

    /// Offsets from most to least recently used (for tests).
    var offsetsByRecency: [UInt64] {
        var result: [UInt64] = []
        var slot = head
        while slot != -1 {
            if let table = tables[slot] { result.append(table.offset) }
            slot = next[slot]
        }
        return result
    }

    private mutating func moveToFront(_ slot: Int) {
        guard slot != head else { return }
        unlink(slot)
        pushFront(slot)
    }

    private mutating func unlink(_ slot: Int) {
        let p = previous[slot], n = next[slot]
        if p != -1 { next[p] = n } else { head = n }
        if n != -1 { previous[n] = p } else { tail = p }
        previous[slot] = -1
        next[slot] = -1
    }

    private mutating func pushFront(_ slot: Int) {
        previous[slot] = -1
        next[slot] = head
        if head != -1 { previous[head] = slot }
        head = slot
        if tail == -1 { tail = slot }
    }

    /// QEMU's default sizing: enough tables to map the whole image, but at
    /// most 32 MiB of them, and never fewer than two.
    static func defaultCapacity(virtualSize: UInt64, clusterSize: UInt64, l2EntrySize: UInt64) -> Int {
        let clusters = divideRoundingUp(virtualSize, clusterSize)
        let tablesForImage = divideRoundingUp(clusters * l2EntrySize, clusterSize)
        let tablesForLimit = Qcow2Limits.defaultL2CacheBytes / clusterSize
        return Int(max(2, min(tablesForImage, tablesForLimit)))
    }
}
