// Where an image's metadata lies, to refuse writes over it (QEMU's
// qcow2_check_metadata_overlap with its default "cached" checks: everything
// but the snapshots' L2 tables). Kept up to date as tables are allocated, so
// that a check costs a few lookups rather than a pass over the L1 and
// refcount tables.

struct MetadataOverlap {
    /// QEMU's QCow2MetadataOverlap bits, in the order they are checked.
    enum Kind: Int, CaseIterable {
        case mainHeader = 0, activeL1, activeL2, refcountTable, refcountBlock
        case snapshotTable, inactiveL1, inactiveL2, bitmapDirectory

        /// QEMU's metadata_ol_names.
        var name: String {
            switch self {
            case .mainHeader: return "qcow2_header"
            case .activeL1: return "active L1 table"
            case .activeL2: return "active L2 table"
            case .refcountTable: return "refcount table"
            case .refcountBlock: return "refcount block"
            case .snapshotTable: return "snapshot table"
            case .inactiveL1: return "inactive L1 table"
            case .inactiveL2: return "inactive L2 table"
            case .bitmapDirectory: return "bitmap directory"
            }
        }
    }

    typealias Area = (offset: UInt64, length: UInt64)

    let clusterBits: UInt64
    var activeL1: Area = (0, 0)
    var refcountTable: Area = (0, 0)
    var snapshotTable: Area = (0, 0)
    var inactiveL1: [Area] = []
    var bitmapDirectory: Area = (0, 0)
    /// Clusters holding active L2 tables and refcount blocks, with how many
    /// table entries name each (a corrupt image may name one twice).
    private var l2Clusters: [UInt64: Int] = [:]
    private var refblockClusters: [UInt64: Int] = [:]

    init(clusterBits: UInt64) { self.clusterBits = clusterBits }

    /// The areas of an image's tables as they are now; the write path and
    /// the check each build theirs from their own copy of the tables.
    init<L2Tables: Sequence<UInt64>, Blocks: Sequence<UInt64>>(
        clusterBits: UInt64, activeL1: Area, l2Tables: L2Tables, refcountTable: Area, refcountBlocks: Blocks,
        snapshots: SnapshotTable, bitmapDirectory: Area?
    ) {
        self.init(clusterBits: clusterBits)
        self.activeL1 = activeL1
        self.refcountTable = refcountTable
        snapshotTable = snapshots.area
        inactiveL1 = snapshots.l1TableAreas
        if let bitmapDirectory { self.bitmapDirectory = bitmapDirectory }
        setL2Tables(l2Tables)
        setRefcountBlocks(refcountBlocks)
    }

    var clusterSize: UInt64 { 1 << clusterBits }

    mutating func addL2Table(_ offset: UInt64) { Self.add(offset, clusterBits: clusterBits, to: &l2Clusters) }
    mutating func removeL2Table(_ offset: UInt64) { Self.remove(offset, clusterBits: clusterBits, from: &l2Clusters) }
    mutating func addRefcountBlock(_ offset: UInt64) { Self.add(offset, clusterBits: clusterBits, to: &refblockClusters) }

    mutating func setL2Tables<S: Sequence>(_ offsets: S) where S.Element == UInt64 {
        l2Clusters = [:]
        for offset in offsets { addL2Table(offset) }
    }

    mutating func setRefcountBlocks<S: Sequence>(_ offsets: S) where S.Element == UInt64 {
        refblockClusters = [:]
        for offset in offsets { addRefcountBlock(offset) }
    }

    /// The clusters a table at `offset` (one cluster long, maybe unaligned) covers.
    private static func clusters(of offset: UInt64, clusterBits: UInt64) -> ClosedRange<UInt64> {
        let first = offset >> clusterBits
        let last = (offset &+ (1 << clusterBits) &- 1) >> clusterBits
        return first...max(first, last)
    }

    // Static, so that no copy of `self` (and of the dictionary being
    // changed, which would then be copied on write) is made per call.
    private static func add(_ offset: UInt64, clusterBits: UInt64, to set: inout [UInt64: Int]) {
        guard offset != 0 else { return }
        for cluster in clusters(of: offset, clusterBits: clusterBits) { set[cluster, default: 0] += 1 }
    }

    private static func remove(_ offset: UInt64, clusterBits: UInt64, from set: inout [UInt64: Int]) {
        guard offset != 0 else { return }
        for cluster in clusters(of: offset, clusterBits: clusterBits) {
            if let n = set[cluster] { set[cluster] = n > 1 ? n - 1 : nil }
        }
    }

    /// The first kind of metadata (in QEMU's order) the write of `size`
    /// bytes at `offset` would touch, leaving out the kinds in `ignoring`.
    func overlap(offset: UInt64, size: UInt64, ignoring: Set<Kind> = []) -> Kind? {
        guard size > 0 else { return nil }
        if !ignoring.contains(.mainHeader) && offset < clusterSize { return .mainHeader }
        // Whole clusters from here on.
        let start = offset & ~(clusterSize - 1)
        let (sum, overflow) = (offset & (clusterSize - 1)).addingReportingOverflow(size)
        let length = overflow ? UInt64.max - start : (alignUp(sum, clusterSize) ?? (UInt64.max - start))
        func hits(_ area: Area) -> Bool {
            area.length > 0 && area.offset < start &+ length && start < area.offset &+ area.length
        }
        func hits(_ set: [UInt64: Int]) -> Bool {
            guard !set.isEmpty else { return false }
            let first = start >> clusterBits
            let count = length >> clusterBits
            if count <= UInt64(set.count) {
                // A plain loop: iterating a Range<UInt64> goes through unspecialised
                // generic code in debug builds, which allocates per step.
                var cluster = first
                while cluster < first + count {
                    if set[cluster] != nil { return true }
                    cluster += 1
                }
                return false
            }
            return set.keys.contains { $0 >= first && $0 - first < count }
        }
        if !ignoring.contains(.activeL1) && hits(activeL1) { return .activeL1 }
        if !ignoring.contains(.refcountTable) && hits(refcountTable) { return .refcountTable }
        if !ignoring.contains(.snapshotTable) && hits(snapshotTable) { return .snapshotTable }
        if !ignoring.contains(.inactiveL1) && inactiveL1.contains(where: hits) { return .inactiveL1 }
        if !ignoring.contains(.activeL2) && hits(l2Clusters) { return .activeL2 }
        if !ignoring.contains(.refcountBlock) && hits(refblockClusters) { return .refcountBlock }
        if !ignoring.contains(.bitmapDirectory) && hits(bitmapDirectory) { return .bitmapDirectory }
        return nil
    }
}
