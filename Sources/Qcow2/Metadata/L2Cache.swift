// L2 tables in memory, and the least-recently-used index every metadata
// cache is built on. A table keeps its cluster exactly as on disk (big-endian
// entries), so writing it back is a plain copy. The index itself is not
// thread-safe; its owner lives in the image's metadata core (MetadataCore.swift).

/// One L2 table. With extended L2 entries each entry is two words: the
/// descriptor, then the subcluster bitmap.
final class L2Table: CachedCluster {
    let wordsPerEntry: Int

    /// A table decoded from its on-disk bytes (one cluster).
    init(offset: UInt64, bigEndianBytes bytes: UnsafeRawBufferPointer, extendedL2: Bool) {
        wordsPerEntry = extendedL2 ? 2 : 1
        super.init(offset: offset, count: bytes.count)
        self.bytes.copyMemory(from: bytes)
    }

    /// An all-zero table (nothing mapped).
    init(offset: UInt64, clusterSize: Int, extendedL2: Bool) {
        wordsPerEntry = extendedL2 ? 2 : 1
        super.init(offset: offset, count: clusterSize)
    }

    var entryCount: Int { bytes.count / (8 * wordsPerEntry) }

    @inline(__always) func entry(_ index: Int) -> UInt64 { word(index * wordsPerEntry) }
    /// The subcluster bitmap; zero for standard entries.
    @inline(__always) func bitmap(_ index: Int) -> UInt64 {
        wordsPerEntry == 2 ? word(index * 2 + 1) : 0
    }

    /// Callers mark the table dirty.
    @inline(__always) func setEntry(_ index: Int, _ value: UInt64) { setWord(index * wordsPerEntry, value) }
    @inline(__always) func setBitmap(_ index: Int, _ value: UInt64) {
        precondition(wordsPerEntry == 2, "standard L2 entries have no bitmap")
        setWord(index * 2 + 1, value)
    }
}

/// The L2 table cache's index.
typealias L2Cache = LRUCache<L2Table>

/// A fixed-capacity LRU map from cluster offset to cached cluster. Slots live
/// in arrays linked by index, so lookups and evictions allocate nothing.
struct LRUCache<Entry: CachedCluster> {
    let capacity: Int
    private var slotByOffset: [UInt64: Int] = [:]
    private var entries: [Entry?]
    private var previous: [Int]
    private var next: [Int]
    /// Most recently used slot, and least recently used slot (-1 when empty).
    private var head = -1
    private var tail = -1

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        entries = []
        previous = []
        next = []
        slotByOffset.reserveCapacity(min(capacity, 4096))
    }

    var count: Int { slotByOffset.count }
    var isFull: Bool { slotByOffset.count >= capacity }

    /// The cached entry at `offset`, marked most recently used.
    mutating func lookup(_ offset: UInt64) -> Entry? {
        guard let slot = slotByOffset[offset] else { return nil }
        moveToFront(slot)
        return entries[slot]
    }

    /// The cached entry at `offset`, recency unchanged.
    func peek(_ offset: UInt64) -> Entry? {
        guard let slot = slotByOffset[offset] else { return nil }
        return entries[slot]
    }

    /// The entry the next insertion into a full cache evicts.
    var leastRecentlyUsed: Entry? {
        var slot = tail
        while slot != -1 {
            if let entry = entries[slot] { return entry }
            slot = previous[slot]
        }
        return nil
    }

    /// Adds an entry, evicting the least recently used one when full. If an
    /// entry at the same offset is already cached (another thread loaded it
    /// first), that one is kept and returned.
    @discardableResult
    mutating func insert(_ entry: Entry) -> Entry {
        if let existing = lookup(entry.offset) { return existing }
        let slot: Int
        if entries.count < capacity {
            slot = entries.count
            entries.append(entry)
            previous.append(-1)
            next.append(-1)
        } else {
            // Free slots (from `remove`) sit at the cold end, so the tail is
            // either free or the least recently used entry.
            slot = tail
            unlink(slot)
            if let old = entries[slot] { slotByOffset[old.offset] = nil }
            entries[slot] = entry
        }
        slotByOffset[entry.offset] = slot
        pushFront(slot)
        return entry
    }

    /// Drops the entry at `offset`, if cached.
    mutating func remove(_ offset: UInt64) {
        guard let slot = slotByOffset.removeValue(forKey: offset) else { return }
        unlink(slot)
        entries[slot] = nil
        // Reuse the slot first: put it at the cold end.
        if tail == -1 { head = slot; tail = slot; previous[slot] = -1; next[slot] = -1 } else {
            previous[slot] = tail; next[slot] = -1; next[tail] = slot; tail = slot
        }
    }

    /// Every cached entry, in no particular order.
    var all: [Entry] { entries.compactMap { $0 } }

    /// Offsets from most to least recently used (for tests).
    var offsetsByRecency: [UInt64] {
        var result: [UInt64] = []
        var slot = head
        while slot != -1 {
            if let entry = entries[slot] { result.append(entry.offset) }
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

    /// QEMU's default L2 cache sizing: enough tables to map the whole image,
    /// but at most 32 MiB of them, and never fewer than two.
    static func defaultCapacity(virtualSize: UInt64, clusterSize: UInt64, l2EntrySize: UInt64) -> Int {
        let clusters = divideRoundingUp(virtualSize, clusterSize)
        let tablesForImage = divideRoundingUp(clusters * l2EntrySize, clusterSize)
        let tablesForLimit = Qcow2Limits.defaultL2CacheBytes / clusterSize
        return Int(max(2, min(tablesForImage, tablesForLimit)))
    }
}
