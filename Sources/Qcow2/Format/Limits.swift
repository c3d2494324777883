// QEMU's limits for qcow2, as named constants with the reason each exists.
// Everything read from an image is bounded by one of these before it is used
// to size an allocation or a loop.

package enum Qcow2Limits {
    /// Smallest cluster: one 512-byte sector (cluster_bits 9).
    package static let minClusterBits: UInt32 = 9
    /// Largest cluster QEMU accepts: 2 MiB (cluster_bits 21). Bigger clusters
    /// would make single metadata reads unreasonable.
    package static let maxClusterBits: UInt32 = 21

    /// refcount_order 0...6: refcount entries of 1 to 64 bits.
    package static let maxRefcountOrder: UInt32 = 6

    /// The active L1 table is read whole into memory: QEMU caps it at 32 MiB
    /// (4 Mi entries), which covers an image far beyond any real disk.
    package static let maxL1TableBytes: UInt64 = 32 << 20
    /// L1 indexes are C ints in QEMU: an image needing more L1 entries than
    /// INT_MAX to map its size is refused as too big.
    package static let maxL1Entries: UInt64 = UInt64(Int32.max)
    /// The refcount table is read whole into memory too: QEMU caps it at 8 MiB.
    package static let maxRefcountTableBytes: UInt64 = 8 << 20

    /// Internal snapshots: QEMU refuses more than 65536 of them...
    package static let maxSnapshots: UInt32 = 65536
    /// ...and more than 1 KiB of extra data in a single snapshot table entry.
    package static let maxSnapshotExtraData: UInt32 = 1024
    /// The whole snapshot table is read into memory: bounded at 64 MiB.
    package static let maxSnapshotTableBytes: UInt64 = 64 << 20

    /// The backing file name lives in the header cluster; QEMU stores at most 1023 bytes.
    package static let maxBackingFileNameLength: UInt32 = 1023
    /// QEMU keeps the backing format name in a 16-byte C string, so the
    /// backing format extension holds at most 15 bytes.
    package static let maxBackingFormatLength: UInt32 = 15

    /// Extended L2 entries split a cluster in 32; a subcluster may not be
    /// smaller than a sector, so such images need clusters of 16 KiB or more.
    package static let minSubclusterSize: UInt64 = 512

    /// Fixed header sizes: version 2 ends at byte 72, version 3 at byte 104
    /// (112 with the compression type byte and its padding).
    package static let headerV2Length: UInt32 = 72
    package static let headerV3MinLength: UInt32 = 104
    package static let headerV3Length: UInt32 = 112

    /// Bitmaps are not interpreted, only carried; QEMU allows 65535 of them...
    package static let maxBitmaps: UInt32 = 65535
    /// ...and a bitmap directory of at most 1 KiB per bitmap.
    package static let maxBitmapDirectorySize: UInt64 = 1024 * 65535
    /// The most memory the consistent bitmaps of one open image may take
    /// together (each its whole size, one bit per chunk, set or not). QEMU
    /// bounds each bitmap (512 MiB) and their number (65535) but not the
    /// sum: a hostile image whose bitmaps all name one table of all-ones
    /// entries would have it allocate 32 TiB. 2 GiB holds four of QEMU's
    /// largest bitmaps, or 64 of a 16 TiB disk at the default granularity.
    package static let maxBitmapMemory: UInt64 = 2 << 30
    /// The bitmaps extension: nb_bitmaps, reserved, directory size and offset.
    package static let bitmapsExtensionLength: UInt32 = 24

    /// QEMU follows backing links without a limit (and hangs on a loop); we
    /// stop at this depth with an error. Each layer holds a file descriptor,
    /// so the bound also keeps a hostile chain from exhausting them. It counts
    /// backing files below the top image (QEMU's backing_file_depth), so a
    /// chain of the top and this many backing files opens, in every verb and
    /// the block graph alike (`BackingChainPosition` applies it).
    package static let maxBackingChainDepth = 256

    /// Largest virtual size QEMU creates: 2^63 - 512 would overflow offsets in
    /// places, so QEMU's BDRV_MAX_LENGTH is INT64_MAX rounded down to 512 bytes,
    /// further limited by what the L1 table can address.
    package static let maxVirtualSize: UInt64 = UInt64(Int64.max) & ~511

    /// QEMU's BDRV_REQUEST_MAX_BYTES: the most one request (and so one
    /// cluster allocation) covers, INT_MAX rounded down to whole sectors.
    static let maxRequestBytes: UInt64 = (UInt64(Int32.max) >> 9) << 9

    /// QEMU's default L2 cache: enough to map 32 MiB of L2 tables at most.
    package static let defaultL2CacheBytes: UInt64 = 32 << 20
}

/// Masks and flags of L1, L2 and refcount table entries.
package enum Qcow2EntryMask {
    /// Host offsets in L1/L2 entries: bits 9...55.
    package static let offset: UInt64 = 0x00ff_ffff_ffff_fe00
    /// Refcount table entries: bits 9...63.
    package static let refcountTableOffset: UInt64 = 0xffff_ffff_ffff_fe00
    /// Bit 63 of L1 and standard L2 entries: refcount is exactly one.
    package static let copied: UInt64 = 1 << 63
    /// Bit 62 of L2 entries: compressed cluster.
    package static let compressed: UInt64 = 1 << 62
    /// Bit 0 of standard L2 entries (v3): reads as zeroes.
    package static let zero: UInt64 = 1
    /// Reserved bits of an L1 entry (must be zero): 0...8 and 56...62.
    package static let l1Reserved: UInt64 = 0x7f00_0000_0000_01ff
    /// Reserved bits of a standard L2 entry: 1...8 and 56...61.
    package static let l2Reserved: UInt64 = 0x3f00_0000_0000_01fe
}
