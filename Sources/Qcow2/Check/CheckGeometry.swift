// The sizes and masks the check derives from the header, named as in QEMU's
// BDRVQcow2State, so that the arithmetic reads like the format spec.

struct CheckGeometry {
    let clusterBits: UInt64
    let clusterSize: UInt64
    /// Entries per L2 table (s->l2_size) and bytes per entry (8 or 16).
    let l2Size: Int
    let l2EntrySize: Int
    let extendedL2: Bool
    let width: RefcountWidth
    /// log2 of the refcounts per refcount block.
    let refblockBits: UInt64
    /// Compressed cluster descriptors: host offset bits, then the sector count.
    let csizeShift: UInt64
    let csizeMask: UInt64
    let clusterOffsetMask: UInt64

    init(header: Qcow2Header) throws {
        clusterBits = UInt64(header.clusterBits)
        clusterSize = header.clusterSize
        extendedL2 = header.hasExtendedL2
        l2EntrySize = Int(header.l2EntrySize)
        l2Size = Int(header.l2EntriesPerTable)
        width = try RefcountWidth(order: header.refcountOrder)
        refblockBits = clusterBits + 3 - UInt64(header.refcountOrder)
        csizeShift = 62 - (clusterBits - 8)
        csizeMask = (1 << (clusterBits - 8)) - 1
        clusterOffsetMask = (1 << csizeShift) - 1
    }

    var refblockSize: UInt64 { 1 << refblockBits }

    func offsetIntoCluster(_ offset: UInt64) -> UInt64 { offset & (clusterSize - 1) }
    func startOfCluster(_ offset: UInt64) -> UInt64 { offset & ~(clusterSize - 1) }
    /// size_to_clusters: clusters needed to hold `bytes`.
    func clusters(forBytes bytes: UInt64) -> UInt64 {
        (bytes >> clusterBits) + (bytes & (clusterSize - 1) == 0 ? 0 : 1)
    }
}

/// The masks the check tests entries against (QEMU's qcow2.h).
enum CheckMask {
    static let l1Offset: UInt64 = 0x00ff_ffff_ffff_fe00
    static let l1Reserved: UInt64 = 0x7f00_0000_0000_01ff
    static let l2Offset: UInt64 = 0x00ff_ffff_ffff_fe00
    static let l2StandardReserved: UInt64 = 0x3f00_0000_0000_01fe
    static let refcountTableOffset: UInt64 = 0xffff_ffff_ffff_fe00
    static let refcountTableReserved: UInt64 = 0x1ff
    static let copied: UInt64 = 1 << 63
    static let compressed: UInt64 = 1 << 62
    static let zero: UInt64 = 1
    /// Extended L2 bitmaps: allocated subclusters, then zero subclusters.
    static let bitmapAllAllocated: UInt64 = 0xffff_ffff
    static let bitmapAllZeroes: UInt64 = 0xffff_ffff << 32
}

/// What QEMU's qcow2_get_cluster_type makes of a (first half of an) L2 entry.
enum CheckClusterType {
    case unallocated, zeroPlain, zeroAllocated, normal, compressed

    init(entry: UInt64, extendedL2: Bool) {
        if entry & CheckMask.compressed != 0 {
            self = .compressed
        } else if entry & CheckMask.zero != 0 && !extendedL2 {
            self = entry & CheckMask.l2Offset != 0 ? .zeroAllocated : .zeroPlain
        } else if entry & CheckMask.l2Offset == 0 {
            self = .unallocated
        } else {
            self = .normal
        }
    }
}
