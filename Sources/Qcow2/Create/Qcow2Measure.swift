// How large a qcow2 image file gets (QEMU 7.2's qcow2_measure and
// qcow2_calc_prealloc_size): the metadata of a fully allocated image (the
// header cluster, every L2 table, an L1 table padded to whole clusters, and
// the refcount blocks and table covering all of it) plus the data clusters;
// and the space persistent bitmaps copied into it would take.

package enum Qcow2Measure {
    /// Bytes of a fully allocated image of `virtualSize` (rounded up to
    /// whole clusters): what preallocation=full writes.
    package static func fullyAllocatedSize(
        virtualSize: UInt64, clusterSize: UInt64, refcountWidth: RefcountWidth, extendedL2: Bool
    ) -> UInt64 {
        let data = roundUp(virtualSize, clusterSize)
        let l2EntrySize: UInt64 = extendedL2 ? 16 : 8
        var metadata = clusterSize  // the header
        let l2Entries = roundUp(data / clusterSize, clusterSize / l2EntrySize)
        metadata += l2Entries * l2EntrySize
        let l1Entries = roundUp(l2Entries * l2EntrySize / clusterSize, clusterSize / 8)
        metadata += l1Entries * 8
        metadata += RefcountMetadata.size(
            clusters: (metadata + data) / clusterSize, clusterSize: clusterSize,
            width: refcountWidth, generousIncrease: false).bytes
        return metadata + data
    }

    /// Whether an L1 table for `virtualSize` stays within QEMU's limit
    /// ("The image size is too large (try using a larger cluster size)").
    package static func l1TableFits(virtualSize: UInt64, clusterSize: UInt64, extendedL2: Bool) -> Bool {
        let l2EntrySize: UInt64 = extendedL2 ? 16 : 8
        let l2Tables = divideRoundingUp(roundUp(virtualSize, clusterSize) / clusterSize, clusterSize / l2EntrySize)
        return l2Tables * 8 <= Qcow2Limits.maxL1TableBytes
    }

    /// Clusters that converting `image` (through its chain) into a new image
    /// without a backing file allocates: each cluster holding data, counted
    /// whole; ranges that read as zeroes count nothing.
    package static func dataBytes(of image: BlockImage, clusterSize: UInt64) throws -> UInt64 {
        var required: UInt64 = 0
        var offset: UInt64 = 0
        let size = image.size
        while offset < size {
            let chain = try image.chainBlockStatus(at: offset, length: size - offset)
            var length = chain.status.length
            if !chain.status.isZero && chain.status.isData && chain.status.isAllocated {
                // Up to the end of the cluster, which the next query starts after.
                length = roundUp(offset + length, clusterSize) - offset
                required += offset % clusterSize + length
            }
            offset += length
        }
        return required
    }

    /// Space for `bitmaps` (of an image of `virtualSize`) in an image with
    /// `clusterSize` clusters: each bitmap's data clusters and bitmap table,
    /// and the bitmap directory, each rounded up to whole clusters.
    package static func bitmapsSize(_ bitmaps: [BitmapInfo], virtualSize: UInt64, clusterSize: UInt64) -> UInt64 {
        var total: UInt64 = 0
        var directory: UInt64 = 0
        for bitmap in bitmaps {
            let bits = divideRoundingUp(virtualSize, UInt64(bitmap.granularity))
            let clusters = divideRoundingUp(divideRoundingUp(bits, 8), clusterSize)
            total += clusters * clusterSize
            total += roundUp(clusters * 8, clusterSize)
            // A directory entry: 24 bytes, the name, padded to 8 bytes.
            directory += roundUp(24 + UInt64(bitmap.name.utf8.count), 8)
        }
        return total + roundUp(directory, clusterSize)
    }

    /// Rounds up to a power-of-two alignment; every value here comes from
    /// sizes below 2^63, so it cannot overflow.
    private static func roundUp(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        alignUp(value, alignment) ?? .max
    }
}
