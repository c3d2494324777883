// Before a repair writes metadata, QEMU makes sure the write cannot land on
// other metadata (qcow2_pre_write_overlap_check, in its default "cached"
// mode: every structure but the snapshots' L2 tables). A write that would is
// refused, and the image is marked corrupt. Where the metadata lies is the
// write path's MetadataOverlap, built from the checker's tables when first
// needed and built again after a table moves.

extension Qcow2Checker {
    /// The metadata areas of the tables as they are now.
    func metadataOverlap() -> MetadataOverlap {
        if let overlapIndex { return overlapIndex }
        var bitmapDirectory: MetadataOverlap.Area?
        if header.autoclearFeatures.contains(.bitmaps), let bitmaps = layout.bitmaps {
            bitmapDirectory = (bitmaps.directoryOffset, bitmaps.directorySize)
        }
        let index = MetadataOverlap(
            clusterBits: geometry.clusterBits, activeL1: (header.l1TableOffset, UInt64(l1Table.count) * 8),
            l2Tables: l1Table.lazy.map { $0 & Qcow2EntryMask.offset },
            refcountTable: (refcountTableOffset, UInt64(refcountTable.count) * 8),
            refcountBlocks: refcountTable.lazy.map { $0 & Qcow2EntryMask.refcountTableOffset },
            snapshots: snapshotTable, bitmapDirectory: bitmapDirectory)
        overlapIndex = index
        return index
    }

    /// Refuses a metadata write that overlaps other metadata (the first kind
    /// in QEMU's order, leaving out `ignoring`): the image is marked corrupt
    /// and the write fails with EIO.
    func checkBeforeWriting(offset: UInt64, size: UInt64, ignoring: Set<MetadataOverlap.Kind> = [],
                            diagnostics: CheckDiagnostics) throws {
        guard let kind = metadataOverlap().overlap(offset: offset, size: size, ignoring: ignoring) else { return }
        signalCorruption("Preventing invalid write on metadata (overlaps with \(kind.name))", diagnostics: diagnostics)
        throw CheckFailure(errno: CheckErrno.io)
    }
}
