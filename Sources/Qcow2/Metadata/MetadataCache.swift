// A write-back cache of metadata clusters (L2 tables, refcount blocks): QEMU's
// Qcow2Cache. Dirty entries are written when they are evicted, when the cache
// is written back (flush, close) and where the qcow2 code asks for it.
//
// Ordering (crash safety), as QEMU's qcow2_cache_set_dependency and
// qcow2_cache_depends_on_flush model it:
//  - a cache may depend on another: before any of its dirty entries is
//    written, the other cache is flushed (written and the file synced). The
//    L2 cache depends on the refcount cache once new clusters are entered in
//    L2 tables (refcounts first); the refcount cache depends on the L2 cache
//    once refcounts drop (references removed first).
//  - a cache may depend on a file flush: before its next entry is written
//    the file is synced (guest data copied on write must be durable before
//    an L2 entry points to it).
//  - every entry write is checked first (`checkBeforeWrite`: QEMU's overlap
//    check, which refuses writes over other metadata).
// An open image's caches belong to its metadata core (MetadataCore.swift):
// they are reached only with its lock held.

/// One cached metadata cluster, kept exactly as on disk.
class CachedCluster {
    let offset: UInt64
    /// The cluster's bytes (8-byte aligned), owned by this object.
    let bytes: UnsafeMutableRawBufferPointer
    /// Changed since it was read or written; set by whoever changes it.
    var isDirty = false {
        didSet { if isDirty && !oldValue { becameDirty?(offset) } }
    }
    /// Lets the owning cache keep track of its dirty entries.
    fileprivate var becameDirty: ((UInt64) -> Void)?

    /// A zero-filled cluster of `count` bytes.
    init(offset: UInt64, count: Int) {
        self.offset = offset
        bytes = .allocate(byteCount: count, alignment: 8)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { bytes.deallocate() }

    @inline(__always) func word(_ index: Int) -> UInt64 {
        UInt64(bigEndian: bytes.load(fromByteOffset: index * 8, as: UInt64.self))
    }

    @inline(__always) func setWord(_ index: Int, _ value: UInt64) {
        bytes.storeBytes(of: value.bigEndian, toByteOffset: index * 8, as: UInt64.self)
    }

    func clear() { bytes.initializeMemory(as: UInt8.self, repeating: 0) }

    var readOnlyBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(bytes) }
}

/// What one cache needs to know about another to order writes.
protocol WriteBackCache: AnyObject {
    /// The cache to flush before writing any dirty entry of this one.
    var dependency: WriteBackCache? { get set }
    /// Whether the file must be synced before the next entry is written.
    var needsFileSyncFirst: Bool { get set }
    /// Writes every dirty entry (qcow2_cache_write).
    func writeBack() throws
    /// Writes every dirty entry, then syncs the file (qcow2_cache_flush).
    func flush() throws
    /// Forgets the entry at `offset` without writing it (its cluster was freed).
    func discard(_ offset: UInt64)
}

extension WriteBackCache {
    /// qcow2_cache_set_dependency: this cache's entries may only be written
    /// once `other` has been flushed. Chains are never built: a dependency of
    /// `other`, or a different one of this cache, is resolved first.
    func setDependency(on other: WriteBackCache) throws {
        if other.dependency != nil { try other.flushDependency() }
        if let current = dependency, current !== other { try flushDependency() }
        dependency = other
    }

    /// qcow2_cache_flush_dependency.
    func flushDependency() throws {
        try dependency?.flush()
        dependency = nil
        needsFileSyncFirst = false
    }
}

final class MetadataCache<Entry: CachedCluster>: WriteBackCache {
    let file: BlockFile
    let clusterSize: Int
    private var index: LRUCache<Entry>
    private let makeEmpty: (UInt64) -> Entry
    /// Offsets of the dirty entries, so that writing back costs what is
    /// dirty, not what is cached.
    private var dirtyOffsets = Set<UInt64>()

    weak var dependency: WriteBackCache?
    var needsFileSyncFirst = false
    /// Whether `flush()` syncs the file (the write path and the check sync
    /// where QEMU does; a file that ignores flushes, as a new image's does,
    /// makes that free).
    var syncsOnFlush: Bool
    /// Runs before any entry is written (the metadata overlap check).
    var checkBeforeWrite: ((_ offset: UInt64, _ length: Int) throws -> Void)?
    /// Runs before an entry is read from disk (for sanity checks).
    var checkBeforeRead: ((_ offset: UInt64) throws -> Void)?

    init(file: BlockFile, clusterSize: Int, capacity: Int, syncsOnFlush: Bool = false,
         makeEmpty: @escaping (UInt64) -> Entry) {
        self.file = file
        self.clusterSize = clusterSize
        self.syncsOnFlush = syncsOnFlush
        self.makeEmpty = makeEmpty
        index = LRUCache(capacity: max(1, capacity))
    }

    var capacity: Int { index.capacity }
    var count: Int { index.count }

    /// The cached entry at `offset`, if any, without I/O.
    func cached(_ offset: UInt64) -> Entry? { index.lookup(offset) }

    /// The entry at `offset`, read from the file on a miss (bytes past the end
    /// of the file read as zeroes, as in QEMU). The returned entry stays valid
    /// until the next call that may insert into this cache.
    func get(_ offset: UInt64) throws -> Entry {
        if let entry = index.lookup(offset) { return entry }
        try checkBeforeRead?(offset)
        let entry = makeEmpty(offset)
        try file.read(into: entry.bytes, at: offset)
        return try insert(entry)
    }

    /// A zero-filled, dirty entry for a freshly allocated cluster (not read).
    func getEmpty(_ offset: UInt64) throws -> Entry {
        if let entry = index.lookup(offset) {
            entry.clear()
            entry.isDirty = true
            return entry
        }
        let entry = makeEmpty(offset)
        entry.isDirty = true
        return try insert(entry)
    }

    /// Adds an entry loaded without the lock held (read-only images); if
    /// another thread cached the same cluster first, that one is kept.
    func insertLoaded(_ entry: Entry) throws -> Entry {
        if let existing = index.lookup(entry.offset) { return existing }
        return try insert(entry)
    }

    private func insert(_ entry: Entry) throws -> Entry {
        if index.isFull, let victim = index.leastRecentlyUsed {
            try write(victim)
            forget(victim.offset)
        }
        entry.becameDirty = { [unowned self] offset in self.dirtyOffsets.insert(offset) }
        if entry.isDirty { dirtyOffsets.insert(entry.offset) }
        return index.insert(entry)
    }

    private func forget(_ offset: UInt64) {
        index.peek(offset)?.becameDirty = nil
        index.remove(offset)
        dirtyOffsets.remove(offset)
    }

    /// qcow2_cache_entry_flush: one dirty entry, after what it depends on.
    private func write(_ entry: Entry) throws {
        guard entry.isDirty else { return }
        if dependency != nil {
            try flushDependency()
        } else if needsFileSyncFirst {
            try file.flush()
            needsFileSyncFirst = false
        }
        try checkBeforeWrite?(entry.offset, clusterSize)
        try file.write(entry.readOnlyBytes, at: entry.offset)
        entry.isDirty = false
        dirtyOffsets.remove(entry.offset)
    }

    func writeBack() throws {
        for offset in dirtyOffsets.sorted() {
            guard let entry = index.peek(offset) else {
                dirtyOffsets.remove(offset)
                continue
            }
            try write(entry)
        }
    }

    func flush() throws {
        try writeBack()
        if syncsOnFlush { try file.flush() }
    }

    func discard(_ offset: UInt64) { forget(offset) }

    /// Drops every entry (all must be clean).
    func removeAll() {
        for entry in index.all { forget(entry.offset) }
    }

    var hasDirtyEntries: Bool { !dirtyOffsets.isEmpty }
}
