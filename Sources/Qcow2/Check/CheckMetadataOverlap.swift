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
        var index = MetadataOverlap(clusterBits: geometry.clusterBits)
        index.activeL1 = (header.l1TableOffset, UInt64(l1Table.count) * 8)
        index.refcountTable = (refcountTableOffset, UInt64(refcountTable.count) * 8)
        index.snapshotTable = (snapshotsOffset, snapshotsSize)
        index.inactiveL1 = snapshots.map { ($0.l1TableOffset, UInt64($0.l1Size) * 8) }
        if header.autoclearFeatures.contains(.bitmaps), let bitmaps = layout.bitmaps {
            index.bitmapDirectory = (bitmaps.directoryOffset, bitmaps.directorySize)
        }
        index.setL2Tables(l1Table.lazy.map { $0 & Qcow2EntryMask.offset })
        index.setRefcountBlocks(refcountTable.lazy.map { $0 & Qcow2EntryMask.refcountTableOffset })
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
