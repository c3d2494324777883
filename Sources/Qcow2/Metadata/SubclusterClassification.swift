// What an L2 entry (and, with extended L2, its subcluster bitmap) says about
// one subcluster, and how far a run of subclusters of the same kind extends
// (docs/interop/qcow2.txt, "Extended L2 Entries"). Without extended L2 a
// cluster is a single subcluster.

enum SubclusterClassification {
    /// The kind of subcluster `index` of the cluster described by `entry` and
    /// `bitmap` (the bitmap is ignored for standard entries).
    @inline(__always)
    static func type(entry: UInt64, bitmap: UInt64, index: Int, extendedL2: Bool) -> SubclusterType {
        if entry & Qcow2EntryMask.compressed != 0 { return .compressed }
        let hasOffset = entry & Qcow2EntryMask.offset != 0
        if !extendedL2 {
            // Bit 0 is the whole cluster's "reads as zeroes" flag.
            if entry & Qcow2EntryMask.zero != 0 { return hasOffset ? .zeroAllocated : .zeroPlain }
            return hasOffset ? .normal : .unallocatedPlain
        }
        let allocated = UInt32(truncatingIfNeeded: bitmap)
        let zero = UInt32(truncatingIfNeeded: bitmap >> 32)
        let bit = UInt32(1) << UInt32(index)
        if hasOffset {
            if allocated & zero != 0 { return .invalid }
            if zero & bit != 0 { return .zeroAllocated }
            return allocated & bit != 0 ? .normal : .unallocatedAllocated
        }
        // No host cluster: no subcluster can be allocated.
        if allocated != 0 { return .invalid }
        return zero & bit != 0 ? .zeroPlain : .unallocatedPlain
    }

    /// The kind of subcluster `first`, and how many subclusters from `first`
    /// up to the end of the cluster share it (at least one). Compressed
    /// clusters count whole.
    static func run(entry: UInt64, bitmap: UInt64, from first: Int, extendedL2: Bool) -> (type: SubclusterType, count: Int) {
        let kind = type(entry: entry, bitmap: bitmap, index: first, extendedL2: extendedL2)
        guard extendedL2 else { return (kind, 1) }
        let before = first == 0 ? 0 : UInt32.max >> UInt32(32 - first)   // bits [0, first)
        let allocated = UInt32(truncatingIfNeeded: bitmap)
        let zero = UInt32(truncatingIfNeeded: bitmap >> 32)
        switch kind {
        case .invalid: return (kind, 0)
        case .compressed: return (kind, 32 - first)
        case .normal:
            return (kind, (~(allocated | before)).trailingZeroBitCount - first)
        case .zeroPlain, .zeroAllocated:
            return (kind, (~(zero | before)).trailingZeroBitCount - first)
        case .unallocatedPlain, .unallocatedAllocated:
            return (kind, ((allocated | zero) & ~before).trailingZeroBitCount - first)
        }
    }
}
