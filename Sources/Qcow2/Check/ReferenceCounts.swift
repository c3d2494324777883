// The references the check counts, one per host cluster, packed at the
// image's refcount width (QEMU's in-memory refcount table). Its storage is a
// whole number of clusters, so cluster `i` of it is exactly refcount block
// `i` of an image whose refcounts match: the rebuild writes those slices.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class ReferenceCounts {
    let width: RefcountWidth
    let clusterSize: Int
    /// The largest count an entry holds (width.maxValue, kept at hand).
    private let maxValue: UInt64
    /// Clusters counted (QEMU's nb_clusters); the storage may hold more.
    private(set) var count: Int64 = 0
    private var storage = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// Beyond this, QEMU's allocation fails (g_try_realloc): only hostile
    /// offsets (bit 63 set, so negative to QEMU) ask for so many clusters.
    static let maxStorageBytes: UInt64 = 1 << 36

    init(clusters: Int64, width: RefcountWidth, clusterSize: Int) throws {
        self.width = width
        self.clusterSize = clusterSize
        maxValue = width.maxValue
        try resize(to: clusters)
    }

    deinit { storage.deallocate() }

    /// Bytes of storage for `entries` refcounts: whole clusters.
    private func storageBytes(for entries: UInt64) -> UInt64? {
        let (bits, overflow) = entries.multipliedReportingOverflow(by: width.bits)
        guard !overflow else { return nil }
        let bytes = divideRoundingUp(bits, 8)
        return alignUp(bytes, UInt64(clusterSize))
    }

    /// Grows (never shrinks) to `newCount` clusters; new entries are zero
    /// (realloc_refcount_array). Fails with ENOMEM where QEMU would.
    func resize(to newCount: Int64) throws {
        guard newCount >= 0, let newBytes = storageBytes(for: UInt64(newCount)),
              newBytes <= Self.maxStorageBytes else {
            throw CheckFailure(errno: CheckErrno.noMemory)
        }
        if newBytes > UInt64(storage.count) {
            let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(newBytes), alignment: 16)
            grown.initializeMemory(as: UInt8.self, repeating: 0)
            if storage.count > 0 {
                grown.copyMemory(from: UnsafeRawBufferPointer(storage))
            }
            storage.deallocate()
            storage = grown
        }
        count = newCount
    }

    subscript(cluster: Int64) -> UInt64 {
        get { RefcountCoding.get(UnsafeRawBufferPointer(storage), index: Int(cluster), width: width) }
        set { RefcountCoding.set(storage, index: Int(cluster), value: newValue, width: width) }
    }

    /// All counts back to zero (the count of clusters stays).
    func reset() {
        storage.initializeMemory(as: UInt8.self, repeating: 0)
    }

    /// The cluster-sized slice that is refcount block `index`; the storage
    /// always reaches to the end of the block holding the last cluster.
    func refcountBlock(_ index: Int64) -> UnsafeRawBufferPointer {
        let start = Int(index) * clusterSize
        return UnsafeRawBufferPointer(rebasing: storage[start..<(start + clusterSize)])
    }

    /// Whether any refcount in clusters [start, end) is non-zero; a fast
    /// skip over the empty parts of large images.
    func isZero(from start: Int64, to end: Int64) -> Bool {
        var i = start
        while i < end {
            if self[i] != 0 { return false }
            i += 1
        }
        return true
    }

    /// Counts one more reference to `cluster` (below `count`), unless its
    /// count is already the width's maximum: false then, and the caller
    /// reports the overflow.
    @inline(__always)
    func increment(_ cluster: Int64) -> Bool {
        if width.order == 4 {
            // 16-bit refcounts, the default: one big-endian load and store.
            let at = Int(cluster) * 2
            let value = UInt16(bigEndian: storage.loadUnaligned(fromByteOffset: at, as: UInt16.self))
            guard value != .max else { return false }
            storage.storeBytes(of: (value + 1).bigEndian, toByteOffset: at, as: UInt16.self)
            return true
        }
        let value = self[cluster]
        guard value != maxValue else { return false }
        self[cluster] = value + 1
        return true
    }

    /// The last cluster of refcount block `index` (a whole cluster of the
    /// storage) whose count is not zero; nil if every count is zero.
    /// Counts past `count` are always zero, so none is ever returned.
    func lastNonZero(inBlock index: Int64) -> Int64? {
        let block = refcountBlock(index)
        var end = block.count
        // Whole zero words first: a sparse block is skipped 64 bits at a time.
        while end >= 8, block.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) == 0 { end -= 8 }
        while end > 0, block[end - 1] == 0 { end -= 1 }
        guard end > 0 else { return nil }
        let perBlock = Int64(clusterSize) * 8 / Int64(width.bits)
        var cluster = index * perBlock + (Int64(end) * 8 - 1) / Int64(width.bits)
        while self[cluster] == 0 { cluster -= 1 }   // a sub-byte width: the byte's last non-zero entry
        return cluster
    }
}

extension ReferenceCounts {
    /// alloc_clusters_imrt: the first run of `clusters` free clusters from
    /// `firstFree` on (growing past the end if needed), marked used; moves
    /// `firstFree` to the first free cluster seen. Returns the run's first
    /// cluster. The rebuild places the new refcount structure so.
    func allocate(_ clusters: UInt64, firstFree: inout UInt64) throws -> UInt64 {
        var cluster = firstFree
        var contiguous: UInt64 = 0
        var firstGap = true
        while cluster < UInt64(count) && contiguous < clusters {
            if self[Int64(cluster)] == 0 {
                contiguous += 1
                if firstGap {
                    firstFree = cluster
                    firstGap = false
                }
            } else {
                contiguous = 0
            }
            cluster += 1
        }
        if contiguous < clusters {
            // Clusters past the old end are free; `cluster` may already be past it.
            let newCount = max(UInt64(count), cluster + clusters - contiguous)
            guard newCount <= UInt64(Int64.max) else { throw CheckFailure(errno: CheckErrno.noMemory) }
            try resize(to: Int64(newCount))
            cluster += clusters - contiguous
        }
        let first = cluster - clusters
        for i in first..<cluster { self[Int64(i)] = 1 }
        return first
    }
}
