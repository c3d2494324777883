// The write path of an image open for writing: QEMU 7.2's qcow2 driver, so
// that the same requests on the same image change the file exactly as QEMU
// does. This file holds the state; each concept has its own file beside it:
//   GuestWrite          the write loop (allocate, write data, link)
//   ClusterAllocation   handle_copied/handle_alloc: where guest data goes
//   CopyOnWrite         the untouched parts of new clusters, and linking
//   ClusterFreeing      dropping references (failures reported, as QEMU's)
//   L2TableAllocation   get_cluster_table/l2_allocate and L1 entries
//   L1Growth            qcow2_grow_l1_table
//   Truncate            qcow2_co_truncate's checks, either way (resize, commit)
//   Grow                qcow2_co_truncate growing (resizing, image creation)
//   GrowPreallocation   its preallocation modes: metadata, falloc, full
//   Shrink              qcow2_co_truncate shrinking
//   MakeEmpty           qcow2_make_empty (after a commit)
//   ZeroWrites          write -z (zero flags and subcluster zero bits)
//   Discard             discard (and zero writes of compat=0.10 images)
//   CompressedWrites    write -c
//   FlushOrdering       flush, close, and the ordering rules
//   DirtyBit            lazy refcounts: the dirty bit and repair on open
//   HeaderUpdate        rewriting the header cluster (HeaderCluster encodes it)
//   Corruption          the overlap check and the corrupt bit
//   SnapshotRefcountUpdate  a whole tree's refcounts and COPIED flags (snapshots)
//   SnapshotTableWrite  the writer's side of replacing the snapshot table
//   Amend               qcow2_amend_options: upgrade, downgrade, lazy refcounts
//   RefcountWidthChange qcow2_change_refcount_order (amend refcount_bits)
//   ZeroClusterExpansion  qcow2_expand_zero_clusters (before a downgrade)
// Image creation (Sources/Qcow2/Create) opens its bootstrap image with this
// write path and grows it, as QEMU creates images. From Sources/Qcow2/Metadata:
// RefcountAllocator, ByteAllocation and DiscardQueue (QEMU's allocator),
// MetadataCache (the write-back caches and their ordering), MetadataOverlap.
// Dirty images are repaired on open by the check (Sources/Qcow2/Check).
//
// Locking: a `Qcow2Writer` is the write path's state, owned by the image's
// metadata lock (QEMU's s->lock; `MetadataCore`), so its methods run with the
// lock held by construction. The entry points (`Qcow2Image` extensions in
// these files: guest writes, zero writes, discards, flush, grow, close) take
// the lock through `Qcow2Image.withWriter` for metadata work and release it
// for guest data I/O. Methods that wait for allocations in flight, wake
// waiters or release the lock for I/O take the held lock
// (`lock: borrowing HeldMetadataLock`), which only `withLock` hands out.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class Qcow2Writer {
    /// The image owns its writer (through its metadata lock) and the writer
    /// never outlives it. Unchecked because the image's deinit closes the
    /// writer (an image dropped without close()), and a checked `unowned`
    /// traps on any use of an object being deinitialized.
    unowned(unsafe) let image: Qcow2Image
    let file: BlockFile
    /// The active L1 table and the L2 cache (the same as `MetadataCore.tables`).
    let map: ClusterTables
    /// Replaced only when the refcount width changes (RefcountWidthChange.swift).
    private(set) var allocator: RefcountAllocator

    // Geometry (the version changes only by amend: Amend.swift).
    var version: UInt32
    let clusterBits: UInt64
    let clusterSize: UInt64
    /// log2 of the entries in an L2 table, and their number (QEMU's l2_size).
    let l2Bits: UInt64
    let l2Entries: UInt64
    let extendedL2: Bool
    let subclusterBits: UInt64
    let subclusterSize: UInt64
    let subclustersPerCluster: UInt64
    /// The guest size (whole sectors), as QEMU's bs->total_sectors * 512;
    /// grows with `Qcow2Image.grow`.
    var imageSize: UInt64

    /// The header as it is now (dirty and corrupt bits, table locations).
    var header: Qcow2Header
    var extensions: [HeaderExtension]
    var backingFileName: String?
    /// Refcount updates may lag behind (compat lazy_refcounts, version 3).
    var useLazyRefcounts: Bool
    /// Allocations made but not yet entered into their L2 tables.
    var inFlight: [ClusterAllocation] = []
    /// Set once corruption was found: no more writes.
    var corruption: String?
    var overlap: MetadataOverlap
    var snapshots: SnapshotTable
    var isClosed = false
    /// The dirty bitmaps in memory, newest first (QEMU's bs->dirty_bitmaps);
    /// loaded on open, stored on close (Sources/Qcow2/Bitmaps).
    var dirtyBitmaps: [DirtyBitmap] = [] {
        didSet { image.tracksDirtyBitmaps.store(!dirtyBitmaps.isEmpty, ordering: .relaxed) }
    }
    /// Guest ranges marked dirty while a QMP transaction is under way (nil
    /// otherwise), so that bitmaps it restores on abort keep them.
    var bitmapWriteLog: [(offset: UInt64, length: UInt64)]?
    /// The bitmaps extension as the header has it (QEMU's nb_bitmaps,
    /// bitmap_directory_offset and _size); nil for none. Kept apart from
    /// `extensions`: `writeHeaderCluster` adds it back in QEMU's place.
    var bitmapsExtension: BitmapsExtension?
    /// A bitmaps extension without its autoclear bit was found: the header
    /// is rewritten without it on open, as QEMU does.
    let foundStaleBitmaps: Bool

    init(image: Qcow2Image, tables: ClusterTables, header: Qcow2Header, extensions: [HeaderExtension],
         backingFileName: String?, refcountCacheCapacity: Int? = nil) throws {
        self.image = image
        file = image.file
        map = tables
        self.header = header
        self.extensions = extensions.filter {
            if case .bitmaps = $0 { return false }
            return true
        }
        var bitmaps: BitmapsExtension?
        for case let .bitmaps(data) in extensions { bitmaps = try? BitmapsExtension(data: data) }
        foundStaleBitmaps = bitmaps != nil && !header.autoclearFeatures.contains(.bitmaps)
        bitmapsExtension = foundStaleBitmaps ? nil : bitmaps
        self.backingFileName = backingFileName
        version = header.version
        clusterBits = UInt64(header.clusterBits)
        clusterSize = header.clusterSize
        l2Bits = UInt64(header.l2Bits)
        l2Entries = header.l2EntriesPerTable
        extendedL2 = header.hasExtendedL2
        subclustersPerCluster = header.subclustersPerCluster
        subclusterSize = header.subclusterSize
        subclusterBits = UInt64(header.subclusterSize.trailingZeroBitCount)
        imageSize = header.size & ~511
        useLazyRefcounts = header.version >= 3 && header.hasLazyRefcounts

        // The refcount table was validated with the header (at most 8 MiB).
        let tableEntries = Int(UInt64(header.refcountTableClusters) * header.clusterSize / 8)
        var table = [UInt64](repeating: 0, count: tableEntries)
        let got = try table.withUnsafeMutableBytes { [file] in try file.read(into: $0, at: header.refcountTableOffset) }
        guard got == tableEntries * 8 else {
            throw Qcow2Error.shortRead(step: "reading the refcount table", offset: header.refcountTableOffset, expected: tableEntries * 8)
        }
        for i in table.indices { table[i] = UInt64(bigEndian: table[i]) }
        allocator = RefcountAllocator(
            file: file, clusterBits: header.clusterBits, width: try RefcountWidth(order: header.refcountOrder),
            tableOffset: header.refcountTableOffset, table: table,
            cacheCapacity: refcountCacheCapacity ?? Int(max(4, (1 << 20) / header.clusterSize)))
        snapshots = try SnapshotTable.read(file: file, offset: header.snapshotsOffset, count: header.snapshotCount)
        overlap = MetadataOverlap(clusterBits: UInt64(header.clusterBits))

        map.l2Tables.syncsOnFlush = true
        map.l2Tables.checkBeforeWrite = { [unowned self] offset, length in
            try self.checkOverlap(offset: offset, length: UInt64(length), ignoring: [.activeL2])
        }
        attach(allocator)
        rebuildOverlapIndex()
    }

    /// Connects an allocator to this write path: its syncs, the overlap
    /// check of its blocks, the header fields naming its table.
    private func attach(_ allocator: RefcountAllocator) {
        allocator.syncsWrites = true
        allocator.blocks.syncsOnFlush = true
        allocator.l2Tables = map.l2Tables
        allocator.blocks.checkBeforeWrite = { [unowned self] offset, length in
            try self.checkOverlap(offset: offset, length: UInt64(length), ignoring: [.refcountBlock])
        }
        allocator.tableReplaced = { [unowned self] offset, clusters in
            try self.writeRefcountTableLocation(offset: offset, clusters: clusters)
        }
        allocator.tableChanged = { [unowned self] index in self.refcountTableChanged(index) }
    }

    /// Makes `newAllocator` (a refcount structure of another width, already
    /// on disk) the one in use; returns the old one. The caller names it in
    /// the header.
    func replaceAllocator(with newAllocator: RefcountAllocator) -> RefcountAllocator {
        let old = allocator
        newAllocator.freeClusterIndex = old.freeClusterIndex
        newAllocator.freeByteOffset = old.freeByteOffset
        newAllocator.freeByteClusterWasFreed = old.freeByteClusterWasFreed
        attach(newAllocator)
        allocator = newAllocator
        rebuildOverlapIndex()
        return old
    }

    // MARK: Geometry helpers (QEMU's inline functions of qcow2.h)

    @inline(__always) func offsetInCluster(_ offset: UInt64) -> UInt64 { offset & (clusterSize - 1) }
    @inline(__always) func startOfCluster(_ offset: UInt64) -> UInt64 { offset & ~(clusterSize - 1) }
    @inline(__always) func sizeToClusters(_ size: UInt64) -> UInt64 { divideRoundingUp(size, clusterSize) }
    @inline(__always) func sizeToSubclusters(_ size: UInt64) -> UInt64 { divideRoundingUp(size, subclusterSize) }
    @inline(__always) func l1Index(_ offset: UInt64) -> Int { Int(offset >> (clusterBits + l2Bits)) }
    @inline(__always) func l2Index(_ offset: UInt64) -> Int { Int((offset >> clusterBits) & (l2Entries - 1)) }
    /// Subcluster index within its cluster (offset_to_sc_index).
    @inline(__always) func subclusterIndex(_ offset: UInt64) -> Int {
        Int((offset >> subclusterBits) & (subclustersPerCluster - 1))
    }
    @inline(__always) func roundUp(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        (value + alignment - 1) & ~(alignment - 1)
    }

    /// QEMU's qcow2_get_cluster_type (with extended L2 entries bit 0 is no
    /// zero flag, so clusters are only unallocated, normal or compressed).
    func clusterType(_ entry: UInt64) -> ClusterType {
        L2Entry(rawValue: entry).type(clusterBits: UInt32(clusterBits), extendedL2: extendedL2)
    }

    func subclusterType(entry: UInt64, bitmap: UInt64, index: Int) -> SubclusterType {
        SubclusterClassification.type(entry: entry, bitmap: bitmap, index: index, extendedL2: extendedL2)
    }

    /// Every metadata change needs refcounts on disk to be exact, unless the
    /// image is dirty (lazy refcounts in use): qcow2_need_accurate_refcounts.
    var needsAccurateRefcounts: Bool { !header.isDirty }

    // MARK: Overlap index upkeep

    func rebuildOverlapIndex() {
        overlap = MetadataOverlap(
            clusterBits: clusterBits, activeL1: (header.l1TableOffset, UInt64(map.l1.count) * 8),
            l2Tables: map.l1.lazy.map { $0 & Qcow2EntryMask.offset },
            refcountTable: (allocator.tableOffset, UInt64(allocator.table.count) * 8),
            refcountBlocks: refcountBlockOffsets(), snapshots: snapshots, bitmapDirectory: nil)
        updateBitmapDirectoryOverlap()
    }

    /// The directory is metadata while the autoclear bit vouches for it
    /// (QEMU's QCOW2_OL_BITMAP_DIRECTORY check).
    func updateBitmapDirectoryOverlap() {
        if header.autoclearFeatures.contains(.bitmaps), let bitmapsExtension {
            overlap.bitmapDirectory = (bitmapsExtension.directoryOffset, bitmapsExtension.directorySize)
        } else {
            overlap.bitmapDirectory = (0, 0)
        }
    }

    private func refcountBlockOffsets() -> [UInt64] {
        let table = allocator.table
        guard !table.isEmpty else { return [] }
        return table[0...min(allocator.maxTableIndex, table.count - 1)].map { $0 & Qcow2EntryMask.refcountTableOffset }
    }

    private func refcountTableChanged(_ index: Int?) {
        if let index {
            overlap.addRefcountBlock(allocator.table[index] & Qcow2EntryMask.refcountTableOffset)
        } else {
            overlap.refcountTable = (allocator.tableOffset, UInt64(allocator.table.count) * 8)
            overlap.setRefcountBlocks(refcountBlockOffsets())
        }
    }

    /// Changes L1 entry `index` in memory (the caller writes it out).
    func setL1Entry(_ index: Int, _ value: UInt64) {
        overlap.removeL2Table(map.l1[index] & Qcow2EntryMask.offset)
        map.l1[index] = value
        overlap.addL2Table(value & Qcow2EntryMask.offset)
    }
}

extension Qcow2Image {
    /// Runs `body` with the metadata lock held, on the write path's state and
    /// the held lock. Throws `readOnly` for an image not open for writing.
    /// Metadata found broken on the way marks the image corrupt (Corruption.swift);
    /// the first such event is reported as qcow2_signal_corruption prints it.
    func withWriter<T>(_ body: (Qcow2Writer, borrowing HeldMetadataLock) throws -> T) throws -> T {
        try clusterMap.lock.withLock { core, lock in
            guard let writer = core.writer else { throw Qcow2Error.readOnly }
            let wasCorrupt = writer.corruption != nil
            do {
                return try body(writer, lock)
            } catch {
                if !wasCorrupt, let corruption = writer.corruption {
                    report(Qcow2Diagnostic(.plain, "qcow2: Marking image as corrupt: \(corruption); "
                                                   + "further corruption events will be suppressed"))
                }
                throw error
            }
        }
    }

    /// The guest size the write path works with (`Qcow2Writer.imageSize`).
    func writerImageSize() throws -> UInt64 {
        try withWriter { writer, _ in writer.imageSize }
    }
}
