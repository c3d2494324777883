// A write-back cache of metadata clusters (refcount blocks, L2 tables) for the
// image being created, standing in for QEMU's qcow2 caches. What matters for a
// byte-identical image is not when a cached cluster is written but that every
// cluster QEMU writes is written, last version last: entries are written on
// `flush()` (where QEMU flushes) or when the cache is full, and read back from
// the file on a miss.

final class CachedCluster {
    var bytes: [UInt8]
    var isDirty = false
    init(bytes: [UInt8]) { self.bytes = bytes }
}

final class MetadataCache {
    private let file: BlockFile
    private let clusterSize: Int
    /// Entries kept before the whole cache is written back and dropped.
    private let capacity: Int
    private var entries: [UInt64: CachedCluster] = [:]

    init(file: BlockFile, clusterSize: Int, capacityBytes: Int) {
        self.file = file
        self.clusterSize = clusterSize
        capacity = max(4, capacityBytes / clusterSize)
    }

    /// The cluster at `offset`, read from the file on a miss. The returned
    /// object must be mutated before the next `get`/`getEmpty` call (which may
    /// evict it); mutations must set `isDirty`.
    func get(_ offset: UInt64) throws -> CachedCluster {
        if let entry = entries[offset] { return entry }
        let bytes = try file.readExactly(clusterSize, at: offset, step: "reading metadata cluster")
        return try insert(CachedCluster(bytes: bytes), at: offset)
    }

    /// A zero-filled, dirty entry for a freshly allocated cluster (not read).
    func getEmpty(_ offset: UInt64) throws -> CachedCluster {
        let entry = CachedCluster(bytes: [UInt8](repeating: 0, count: clusterSize))
        entry.isDirty = true
        if entries[offset] != nil {
            entries[offset] = entry
            return entry
        }
        return try insert(entry, at: offset)
    }

    private func insert(_ entry: CachedCluster, at offset: UInt64) throws -> CachedCluster {
        if entries.count >= capacity { try flush(); entries.removeAll(keepingCapacity: true) }
        entries[offset] = entry
        return entry
    }

    /// Writes every dirty entry, in offset order.
    func flush() throws {
        for offset in entries.keys.sorted() {
            guard let entry = entries[offset], entry.isDirty else { continue }
            try file.write(entry.bytes, at: offset)
            entry.isDirty = false
        }
    }
}
