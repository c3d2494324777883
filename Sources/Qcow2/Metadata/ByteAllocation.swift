// Space for compressed clusters (QEMU's qcow2_alloc_bytes): compressed data is
// packed back to back, so consecutive compressed writes share host clusters.
// Each host cluster's refcount counts the compressed clusters touching it; a
// cluster whose refcount is already at the width's maximum takes no more
// (with 1-bit refcounts every compressed cluster gets a host cluster of its
// own). The position to continue from lives only in memory: an image opened
// again starts a new host cluster.
//
// The one place the write path departs from QEMU 7.2: when the cluster to
// continue in was freed and has been allocated again since (for normal
// data), QEMU packs compressed data into it anyway, overwriting that guest
// data and sharing a COPIED cluster; here a new cluster is started instead.
// While the freed cluster is still free, QEMU's behaviour is kept.

extension RefcountAllocator {
    /// Allocates `size` bytes (at most a cluster) for compressed data, right
    /// after the previous compressed data when that fits, and returns their
    /// host offset. The caller makes its L2 table depend on the refcounts.
    func allocateBytes(_ size: UInt64) throws -> UInt64 {
        precondition(size > 0 && size <= clusterSize)
        var offset = freeByteOffset
        if offset != 0 {
            let current = try refcount(ofCluster: offset >> clusterBits)
            if current == width.maxValue {
                offset = 0
            } else if freeByteClusterWasFreed && current != 0 {
                offset = 0
                noteRepackingAvoided()
            }
        }
        var freeInCluster = clusterSize - (offset & (clusterSize - 1))
        // Descriptor offsets have 62 - (cluster_bits - 8) bits.
        let offsetBits = CompressedClusterDescriptor.offsetBits(clusterBits: UInt32(clusterBits))
        let limit = min((UInt64(1) << offsetBits) - 1, Self.maxClusterOffset)
        while true {
            if offset == 0 || freeInCluster < size {
                let newCluster = try allocateWithoutReference(clusterSize, limit: limit)
                guard newCluster != 0 else {
                    throw Qcow2Error.corruptMetadata("Preventing invalid allocation of compressed cluster at offset 0")
                }
                if offset == 0 || alignUp(offset, clusterSize) != newCluster {
                    offset = newCluster
                    freeInCluster = clusterSize
                } else {
                    // The data continues into the next cluster.
                    freeInCluster += clusterSize
                }
            }
            do {
                try updateRefcount(offset: offset, length: size, addend: 1, decrease: false, type: .never)
                break
            } catch is AllocationRestart {
                offset = 0
            }
        }
        freeByteOffset = offset + size
        freeByteClusterWasFreed = false
        if freeByteOffset & (clusterSize - 1) == 0 { freeByteOffset = 0 }
        return offset
    }

    /// Drops the reference an L2 entry holds, whatever the cluster's kind
    /// (qcow2_free_any_cluster); QEMU reports failures here and goes on (the
    /// clusters leak): Write/ClusterFreeing.swift.
    func freeAnyCluster(entry: UInt64, extendedL2: Bool, type: DiscardType) throws {
        switch L2Entry(rawValue: entry).type(clusterBits: UInt32(clusterBits), extendedL2: extendedL2) {
        case let .compressed(descriptor):
            try freeClusters(offset: descriptor.hostOffset, length: descriptor.byteLength, type: type)
        case let .normal(host), let .zeroAllocated(host):
            guard host & (clusterSize - 1) == 0 else {
                throw Qcow2Error.corruptMetadata("Cannot free unaligned cluster \(hex(host))")
            }
            try freeClusters(offset: host, length: clusterSize, type: type)
        case .zeroPlain, .unallocated:
            break
        }
    }
}
