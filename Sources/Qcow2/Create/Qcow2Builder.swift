// Builds a new qcow2 image the way QEMU 7.2's qcow2_co_create does, so the
// result is byte for byte what `qemu-img create` writes:
//  1. a header cluster, a one-cluster refcount table at cluster 1 naming an
//     empty refcount block at cluster 2, then clusters 0-2 allocated;
//  2. "truncate" to the virtual size: an L1 table of exactly the entries the
//     size needs, allocated after that, then the preallocation mode's work;
//  3. the final header cluster (extensions, backing file name).
// Every allocation goes through `RefcountAllocator`, QEMU's allocator.

final class Qcow2Builder {
    let file: BlockFile
    let options: Qcow2CreateOptions
    let clusterBits: UInt64
    let clusterSize: UInt64
    /// Bytes per L2 entry: 8, or 16 with extended L2 entries.
    let l2EntrySize: UInt64
    /// Entries per L2 table (QEMU's L2 slices are whole tables here).
    let l2Entries: UInt64
    let subclusterSize: UInt64
    let allocator: RefcountAllocator
    let l2Tables: MetadataCache<CachedCluster>

    private(set) var l1Table: [UInt64] = []
    private(set) var l1Offset: UInt64 = 0
    private(set) var size: UInt64 = 0

    /// QEMU's BDRV_MAX_LENGTH: the largest image the block layer allows.
    static let maxImageLength: UInt64 = UInt64(Int64.max) & ~((1 << 30) - 1)

    /// Writes the bootstrap structures and allocates clusters 0-2.
    /// `options` must be validated.
    init(file: BlockFile, options: Qcow2CreateOptions) throws {
        self.file = file
        self.options = options
        clusterBits = UInt64(options.clusterSize.trailingZeroBitCount)
        clusterSize = options.clusterSize
        l2EntrySize = options.extendedL2 ? 16 : 8
        l2Entries = clusterSize / l2EntrySize
        subclusterSize = options.extendedL2 ? clusterSize / 32 : clusterSize
        guard let width = RefcountWidth(bits: options.refcountBits) else { throw Qcow2CreateError.invalidRefcountWidth }

        // Cluster 1: the refcount table, whose only entry names cluster 2, an
        // empty refcount block (QEMU writes both clusters at once).
        var table = [UInt64](repeating: 0, count: Int(clusterSize / 8))
        table[0] = 2 * clusterSize
        var bootstrap = RefcountTable(entries: table).encode()
        bootstrap += [UInt8](repeating: 0, count: Int(clusterSize))
        try file.write(bootstrap, at: clusterSize)

        allocator = RefcountAllocator(
            file: file, clusterBits: UInt32(clusterBits), width: width, tableOffset: clusterSize, table: table)
        let size = Int(clusterSize)
        l2Tables = MetadataCache(file: file, clusterSize: size, capacity: (16 << 20) / size) {
            CachedCluster(offset: $0, count: size)
        }
        allocator.l2Tables = l2Tables

        let first = try allocator.allocateClusters(3 * clusterSize)
        guard first == 0 else { throw Qcow2Error.corruptMetadata("first cluster in empty image is already in use") }
    }

    // MARK: Resize

    /// Gives the image its virtual size: QEMU's qcow2_co_truncate growing an
    /// empty image, with the options' preallocation mode.
    func resize(to newSize: UInt64) throws {
        guard newSize <= UInt64(Int64.max) else { throw Qcow2CreateError.couldNotResize(reason: "Image size cannot be negative") }
        guard newSize <= Self.maxImageLength else {
            throw Qcow2CreateError.couldNotResize(reason: "offset(\(newSize)) exceeds maximum(\(Self.maxImageLength))")
        }
        let l1Entries = divideRoundingUp(newSize, l2Entries << clusterBits)
        try growL1Table(to: l1Entries)

        switch options.preallocation {
        case .off: break
        case .metadata: try preallocateMetadata(from: 0, to: newSize)
        case .falloc, .full: try preallocateData(size: newSize)
        }
        if options.preallocation != .off {
            try l2Tables.flush()
            try allocator.blocks.flush()
        }
        size = newSize
    }

    /// qcow2_grow_l1_table with an exact size, from an empty table.
    private func growL1Table(to entries: UInt64) throws {
        guard entries > UInt64(l1Table.count) else { return }
        guard entries <= UInt64(Int32.max) / 8, entries <= Qcow2Limits.maxL1TableBytes / 8 else { throw FileTooLarge() }
        let bytes = entries * 8
        let offset = try allocator.allocateClusters(bytes)
        try allocator.blocks.flush()
        try writeZeroes(at: offset, length: bytes)
        l1Table = [UInt64](repeating: 0, count: Int(entries))
        l1Offset = offset
    }

    func writeZeroes(at offset: UInt64, length: UInt64) throws {
        let chunk = [UInt8](repeating: 0, count: Int(min(length, 1 << 20)))
        var done: UInt64 = 0
        while done < length {
            let n = min(length - done, UInt64(chunk.count))
            try chunk.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[0..<Int(n)]), at: offset + done) }
            done += n
        }
    }

    // MARK: L2 tables

    func l1Index(_ guestOffset: UInt64) -> Int { Int(guestOffset / (l2Entries << clusterBits)) }
    func l2Index(_ guestOffset: UInt64) -> UInt64 { (guestOffset >> clusterBits) & (l2Entries - 1) }

    /// The L2 table mapping `guestOffset`, allocated if the L1 entry has none
    /// (get_cluster_table).
    func l2Table(for guestOffset: UInt64) throws -> CachedCluster {
        let index = l1Index(guestOffset)
        guard index < l1Table.count else { throw Qcow2Error.corruptMetadata("guest offset \(guestOffset) is beyond the L1 table") }
        if l1Table[index] & Qcow2EntryMask.copied == 0 { try allocateL2Table(l1Index: index) }
        return try l2Tables.get(l1Table[index] & Qcow2EntryMask.offset)
    }

    /// l2_allocate for an empty L1 entry: a zeroed table, written at once,
    /// then the L1 entry (8 bytes, as QEMU writes it with buffered I/O).
    private func allocateL2Table(l1Index index: Int) throws {
        let offset = try allocator.allocateClusters(clusterSize)
        guard offset != 0 else { throw Qcow2Error.corruptMetadata("Preventing invalid allocation of L2 table at offset 0") }
        try allocator.blocks.flush()
        _ = try l2Tables.getEmpty(offset)
        try l2Tables.flush()
        l1Table[index] = offset | Qcow2EntryMask.copied
        var entry = [UInt8](repeating: 0, count: 8)
        entry.setBE(l1Table[index], at: 0)
        try file.write(entry, at: l1Offset + UInt64(index) * 8)
    }

    /// A run of newly allocated clusters to enter into one L2 table
    /// (QEMU's QCowL2Meta), with the zeroes to write after the guest data in
    /// the last cluster (the "COW end" region; nothing precedes the data here).
    struct Mapping {
        var guestOffset: UInt64
        var hostOffset: UInt64
        var clusters: UInt64
        var tailOffset: UInt64
        var tailBytes: UInt64
    }

    /// qcow2_alloc_cluster_link_l2 for a preallocation: copy-on-write of the
    /// tail (zeroes: nothing is mapped yet and the backing file is only
    /// attached later), then the entries, flagged COPIED. Extended L2 bitmaps
    /// stay zero: preallocated subclusters read from the backing file.
    func link(_ mapping: Mapping) throws {
        if mapping.tailBytes > 0 {
            try writeZeroes(at: mapping.hostOffset + mapping.tailOffset, length: mapping.tailBytes)
        }
        let table = try l2Table(for: mapping.guestOffset)
        let first = l2Index(mapping.guestOffset)
        precondition(first + mapping.clusters <= l2Entries)
        table.isDirty = true
        for i in 0..<mapping.clusters {
            let entry = (mapping.hostOffset + (i << clusterBits)) | Qcow2EntryMask.copied
            table.setWord(Int((first + i) * l2EntrySize / 8), entry)
        }
    }

    // MARK: Header

    /// Flushes what is cached and writes the final header cluster.
    func finish() throws {
        try l2Tables.flush()
        try allocator.blocks.flush()
        var header = Qcow2Header(
            version: options.version, clusterBits: UInt32(clusterBits), size: size,
            refcountOrder: allocator.width.order, compressionType: options.compressionType)
        if options.extendedL2 { header.incompatibleFeatures.insert(.extendedL2) }
        if options.lazyRefcounts { header.compatibleFeatures.insert(.lazyRefcounts) }
        header.l1Size = UInt32(l1Table.count)
        header.l1TableOffset = l1Offset
        header.refcountTableOffset = allocator.tableOffset
        header.refcountTableClusters = UInt32(allocator.tableClusters)
        let cluster = try HeaderCluster.encode(
            header: header, backingFile: options.backingFile, backingFormat: options.backingFormat)
        try file.write(cluster, at: 0)
    }
}
