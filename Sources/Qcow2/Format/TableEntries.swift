// L1 and L2 table entries as small value types over their raw bits
// (docs/interop/qcow2.txt, "Cluster mapping").

/// An L1 table entry: where an L2 table lives, and whether its refcount is one.
package struct L1Entry: Equatable, Hashable, Sendable {
    package var rawValue: UInt64
    package init(rawValue: UInt64) { self.rawValue = rawValue }
    package init(l2Offset: UInt64, copied: Bool) {
        rawValue = (l2Offset & Qcow2EntryMask.offset) | (copied ? Qcow2EntryMask.copied : 0)
    }

    /// Host offset of the L2 table; 0 means unallocated.
    package var l2Offset: UInt64 { rawValue & Qcow2EntryMask.offset }
    package var isCopied: Bool { rawValue & Qcow2EntryMask.copied != 0 }
    package var hasReservedBits: Bool { rawValue & Qcow2EntryMask.l1Reserved != 0 }
}

/// What a (standard) L2 entry says about its cluster.
package enum ClusterType: Equatable, Sendable {
    /// Not allocated here: read from the backing file (or zeroes).
    case unallocated
    /// Reads as zeroes; `hostOffset` may keep a preallocated cluster.
    case zeroPlain
    case zeroAllocated(hostOffset: UInt64)
    case normal(hostOffset: UInt64)
    case compressed(CompressedClusterDescriptor)
}

/// A standard (64-bit) L2 entry. Extended entries add a `SubclusterBitmap`.
package struct L2Entry: Equatable, Hashable, Sendable {
    package var rawValue: UInt64
    package init(rawValue: UInt64) { self.rawValue = rawValue }

    package static let unallocated = L2Entry(rawValue: 0)

    package static func normal(hostOffset: UInt64, copied: Bool = true) -> L2Entry {
        L2Entry(rawValue: (hostOffset & Qcow2EntryMask.offset) | (copied ? Qcow2EntryMask.copied : 0))
    }

    package var isCopied: Bool { rawValue & Qcow2EntryMask.copied != 0 }
    package var isCompressed: Bool { rawValue & Qcow2EntryMask.compressed != 0 }
    /// The v3 "reads as zeroes" flag (bit 0); meaningless on compressed entries.
    package var hasZeroFlag: Bool { !isCompressed && rawValue & Qcow2EntryMask.zero != 0 }
    /// Host offset of a normal (uncompressed) cluster.
    package var hostOffset: UInt64 { rawValue & Qcow2EntryMask.offset }
    package var hasReservedBits: Bool { !isCompressed && rawValue & Qcow2EntryMask.l2Reserved != 0 }

    /// Classifies a standard entry. `clusterBits` is needed to split the
    /// compressed descriptor.
    package func type(clusterBits: UInt32) -> ClusterType {
        type(clusterBits: clusterBits, extendedL2: false)
    }

    /// Classifies the first half of an entry. With extended L2 entries bit 0
    /// is not a zero flag (the subcluster bitmap says what reads as zeroes),
    /// so such a cluster is only ever unallocated, normal or compressed.
    package func type(clusterBits: UInt32, extendedL2: Bool) -> ClusterType {
        if isCompressed { return .compressed(CompressedClusterDescriptor(entry: self, clusterBits: clusterBits)) }
        let offset = hostOffset
        if hasZeroFlag && !extendedL2 { return offset == 0 ? .zeroPlain : .zeroAllocated(hostOffset: offset) }
        return offset == 0 ? .unallocated : .normal(hostOffset: offset)
    }

    /// What subcluster `index` holds (QEMU's qcow2_get_subcluster_type).
    /// Without extended L2 entries the cluster is one subcluster (index 0)
    /// and `bitmap` is ignored. A bitmap that contradicts itself or its entry
    /// (allocated and zero, or allocated without a host cluster) makes every
    /// subcluster `.invalid`, not only the one asked for.
    package func subclusterType(bitmap: SubclusterBitmap, index: Int, clusterBits: UInt32, extendedL2: Bool) -> SubclusterType {
        switch type(clusterBits: clusterBits, extendedL2: extendedL2) {
        case .compressed: return .compressed
        case .zeroPlain: return .zeroPlain
        case .zeroAllocated: return .zeroAllocated
        case .normal:
            guard extendedL2 else { return .normal }
            if !bitmap.isValid { return .invalid }
            if bitmap.readsAsZero(index) { return .zeroAllocated }
            return bitmap.isAllocated(index) ? .normal : .unallocatedAllocated
        case .unallocated:
            guard extendedL2 else { return .unallocatedPlain }
            if bitmap.allocatedMask != 0 { return .invalid }
            return bitmap.readsAsZero(index) ? .zeroPlain : .unallocatedPlain
        }
    }
}

/// Where a compressed cluster's bytes are: a host offset (not cluster aligned)
/// and a length in 512-byte sectors, split at bit 62 - (cluster_bits - 8).
package struct CompressedClusterDescriptor: Equatable, Hashable, Sendable {
    package var hostOffset: UInt64
    /// Number of 512-byte sectors touched by the compressed data (at least one).
    package var sectorCount: UInt64

    package init(hostOffset: UInt64, sectorCount: UInt64) {
        self.hostOffset = hostOffset; self.sectorCount = sectorCount
    }

    /// The descriptor for `compressedLength` bytes (at least one) written at
    /// `hostOffset`: the sectors from the one holding the first byte to the
    /// one holding the last.
    package init(hostOffset: UInt64, compressedLength: UInt64) {
        precondition(compressedLength > 0, "a compressed cluster holds at least one byte")
        self.hostOffset = hostOffset
        sectorCount = ((hostOffset + compressedLength - 1) >> 9) - (hostOffset >> 9) + 1
    }

    package init(entry: L2Entry, clusterBits: UInt32) {
        let x = Self.offsetBits(clusterBits: clusterBits)
        let descriptor = entry.rawValue & ~(Qcow2EntryMask.copied | Qcow2EntryMask.compressed)
        hostOffset = descriptor & ((UInt64(1) << x) - 1)
        sectorCount = (descriptor >> x) + 1
    }

    /// Number of bits holding the host offset.
    package static func offsetBits(clusterBits: UInt32) -> UInt64 { 62 - (UInt64(clusterBits) - 8) }

    /// Bytes to read: from hostOffset to the end of the last sector it touches.
    package var byteLength: UInt64 { sectorCount * 512 - (hostOffset & 511) }

    /// Largest sector count the descriptor can hold: the field has
    /// cluster_bits - 8 bits and stores the count minus one.
    package static func maxSectorCount(clusterBits: UInt32) -> UInt64 { UInt64(1) << (UInt64(clusterBits) - 8) }

    /// The L2 entry for this descriptor (compressed clusters are never "copied").
    /// The writer guarantees the fields fit: a compressed cluster is smaller
    /// than a cluster, so it spans at most cluster_size / 512 + 1 sectors.
    package func entry(clusterBits: UInt32) -> L2Entry {
        let x = Self.offsetBits(clusterBits: clusterBits)
        precondition(sectorCount >= 1 && sectorCount <= Self.maxSectorCount(clusterBits: clusterBits), "sector count out of range")
        precondition(hostOffset < (UInt64(1) << x), "host offset out of range")
        return L2Entry(rawValue: Qcow2EntryMask.compressed | ((sectorCount - 1) << x) | hostOffset)
    }
}

/// The second half of an extended L2 entry: per-subcluster "allocated" bits
/// (0...31) and "reads as zeroes" bits (32...63).
package struct SubclusterBitmap: Equatable, Hashable, Sendable {
    package var rawValue: UInt64
    package init(rawValue: UInt64) { self.rawValue = rawValue }

    package var allocatedMask: UInt32 { UInt32(truncatingIfNeeded: rawValue) }
    package var zeroMask: UInt32 { UInt32(truncatingIfNeeded: rawValue >> 32) }
    /// Subclusters are numbered 0...31; other indexes are never allocated or zero.
    package func isAllocated(_ index: Int) -> Bool {
        (0..<32).contains(index) && allocatedMask & (UInt32(1) << UInt32(index)) != 0
    }
    package func readsAsZero(_ index: Int) -> Bool {
        (0..<32).contains(index) && zeroMask & (UInt32(1) << UInt32(index)) != 0
    }
    /// A subcluster may not be both allocated and zero.
    package var isValid: Bool { allocatedMask & zeroMask == 0 }
}

/// What one subcluster (or, without extended L2, one whole cluster) holds.
package enum SubclusterType: Equatable, Sendable {
    case unallocatedPlain       // read from backing
    case unallocatedAllocated   // cluster reserved, this subcluster from backing
    case zeroPlain
    case zeroAllocated
    case normal
    case compressed
    case invalid
}
