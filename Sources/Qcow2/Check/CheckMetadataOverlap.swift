// Before a repair writes metadata, QEMU makes sure the write cannot land on
// other metadata (qcow2_pre_write_overlap_check, in its default "cached"
// mode: every structure but the snapshots' L2 tables). A write that would is
// refused, and the image is marked corrupt.

enum MetadataSection: Int, CaseIterable {
    case mainHeader, activeL1, activeL2, refcountTable, refcountBlock, snapshotTable, inactiveL1

    /// The names QEMU's corruption message uses.
    var name: String {
        switch self {
        case .mainHeader: return "qcow2_header"
        case .activeL1: return "active L1 table"
        case .activeL2: return "active L2 table"
        case .refcountTable: return "refcount table"
        case .refcountBlock: return "refcount block"
        case .snapshotTable: return "snapshot table"
        case .inactiveL1: return "inactive L1 table"
        }
    }
}

extension Qcow2Checker {
    /// The first metadata section (in QEMU's order) that the cluster-aligned
    /// range around [offset, offset + size) overlaps, `ignoring` some.
    /// Bitmap directories are checked too (reported as "bitmap directory").
    func overlappingMetadata(offset: UInt64, size: UInt64, ignoring: Set<MetadataSection> = []) -> String? {
        guard size > 0 else { return nil }
        if !ignoring.contains(.mainHeader) && offset < geometry.clusterSize { return MetadataSection.mainHeader.name }
        let start = geometry.startOfCluster(offset)
        let end = alignUp(geometry.offsetIntoCluster(offset) &+ size, geometry.clusterSize).map { start &+ $0 } ?? .max
        func overlaps(_ other: UInt64, _ length: UInt64) -> Bool {
            guard length > 0 else { return false }
            let otherLast = other &+ (length - 1)
            return !(otherLast < start || end - 1 < other)
        }
        if !ignoring.contains(.activeL1) && !l1Table.isEmpty
            && overlaps(header.l1TableOffset, UInt64(l1Table.count) * 8) {
            return MetadataSection.activeL1.name
        }
        if !ignoring.contains(.refcountTable) && !refcountTable.isEmpty
            && overlaps(refcountTableOffset, UInt64(refcountTable.count) * 8) {
            return MetadataSection.refcountTable.name
        }
        if !ignoring.contains(.snapshotTable) && snapshotsSize > 0 && overlaps(snapshotsOffset, snapshotsSize) {
            return MetadataSection.snapshotTable.name
        }
        if !ignoring.contains(.inactiveL1) {
            for snapshot in snapshots where snapshot.l1Size > 0
                && overlaps(snapshot.l1TableOffset, UInt64(snapshot.l1Size) &* 8) {
                return MetadataSection.inactiveL1.name
            }
        }
        if !ignoring.contains(.activeL2) {
            for entry in l1Table where entry & CheckMask.l1Offset != 0
                && overlaps(entry & CheckMask.l1Offset, geometry.clusterSize) {
                return MetadataSection.activeL2.name
            }
        }
        if !ignoring.contains(.refcountBlock) {
            let last = RefcountTable(entries: refcountTable).lastUsedIndex
            for entry in refcountTable.prefix(last + 1) where entry & CheckMask.refcountTableOffset != 0
                && overlaps(entry & CheckMask.refcountTableOffset, geometry.clusterSize) {
                return MetadataSection.refcountBlock.name
            }
        }
        if header.autoclearFeatures.contains(.bitmaps), let bitmaps = layout.bitmaps,
           overlaps(bitmaps.directoryOffset, bitmaps.directorySize) {
            return "bitmap directory"
        }
        return nil
    }

    /// Refuses a metadata write that overlaps other metadata: the image is
    /// marked corrupt and the write fails with EIO.
    func checkBeforeWriting(offset: UInt64, size: UInt64, ignoring: Set<MetadataSection> = [],
                            diagnostics: CheckDiagnostics) throws {
        guard let section = overlappingMetadata(offset: offset, size: size, ignoring: ignoring) else { return }
        signalCorruption("Preventing invalid write on metadata (overlaps with \(section))", diagnostics: diagnostics)
        throw CheckFailure(errno: CheckErrno.io)
    }
}
