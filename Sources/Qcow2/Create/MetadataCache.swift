// A write-back cache of metadata clusters (refcount blocks, L2 tables) for the
// image being created, standing in for QEMU's qcow2 caches. What matters for a
// byte-identical image is not when a cached cluster is written but that every
// cluster QEMU writes is written, last version last: dirty entries are written
// on `flush()` (where QEMU flushes) or when the cache is full, and clusters
// are read back from the file on a miss.

final class CachedCluster {
    let offset: UInt64
    var bytes: [UInt8]
    private(set) var isDirty = false
    fileprivate unowned let cache: MetadataCache

    fileprivate init(offset: UInt64, bytes: [UInt8], cache: MetadataCache) {
        self.offset = offset
        self.bytes = bytes
        self.cache = cache
    }

    /// To be called with every change, so that the change is written.
    func markDirty() {
        guard !isDirty else { return }
        isDirty = true
        cache.dirty.append(offset)
    }

    fileprivate func markClean() { isDirty = false }
}

final class MetadataCache {
    private let file: BlockFile
    private let clusterSize: Int
    /// Entries kept before the whole cache is written back and dropped.
    private let capacity: Int
    private var entries: [UInt64: CachedCluster] = [:]
    /// Offsets of dirty entries (each once).
    fileprivate var dirty: [UInt64] = []

    init(file: BlockFile, clusterSize: Int, capacityBytes: Int) {
        self.file = file
        self.clusterSize = clusterSize
        capacity = max(16, capacityBytes / clusterSize)
    }

    /// The cluster at `offset`, read from the file on a miss. The returned
    /// object must be changed (and marked dirty) before the next `get` or
    /// `getEmpty`, which may evict it.
    func get(_ offset: UInt64) throws -> CachedCluster {
        if let entry = entries[offset] { return entry }
        let bytes = try file.readExactly(clusterSize, at: offset, step: "reading metadata cluster")
        return try insert(CachedCluster(offset: offset, bytes: bytes, cache: self))
    }

    /// A zero-filled, dirty entry for a freshly allocated cluster (not read).
    func getEmpty(_ offset: UInt64) throws -> CachedCluster {
        let entry = CachedCluster(offset: offset, bytes: [UInt8](repeating: 0, count: clusterSize), cache: self)
        if let old = entries[offset] {
            // Replacing a cached entry: its pending write is superseded.
            if old.isDirty { dirty.removeAll { $0 == offset } }
            entries[offset] = entry
        } else {
            _ = try insert(entry)
        }
        entry.markDirty()
        return entry
    }

    private func insert(_ entry: CachedCluster) throws -> CachedCluster {
        if entries.count >= capacity {
            try flush()
            entries.removeAll(keepingCapacity: true)
        }
        entries[entry.offset] = entry
        return entry
    }

    /// Writes every dirty entry, in offset order.
    func flush() throws {
        guard !dirty.isEmpty else { return }
        for offset in dirty.sorted() {
            guard let entry = entries[offset], entry.isDirty else { continue }
            try file.write(entry.bytes, at: offset)
            entry.markClean()
        }
        dirty.removeAll(keepingCapacity: true)
    }
}
