// Header writes of the write path, each as QEMU makes it:
//  - qcow2_update_header rewrites the whole first cluster (clearing the
//    dirty bit, setting the corrupt bit, dropping unknown autoclear bits,
//    naming a new backing file, finishing a new image), as HeaderCluster
//    encodes it;
//  - table moves and the dirty bit patch only their fields, synced, so that
//    the header never names a table before it is on disk.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// qcow2_update_header (the cluster is encoded by `HeaderCluster`).
    func writeHeaderCluster() throws {
        var h = header
        h.size = imageSize
        h.l1Size = UInt32(map.l1.count)
        h.refcountTableOffset = allocator.tableOffset
        h.refcountTableClusters = UInt32(allocator.tableClusters)
        var records = extensions
        if let bitmapsExtension { records.append(.bitmaps(bitmapsExtension.encode())) }
        let cluster = try HeaderCluster.encode(header: h, extensions: records, backingFileName: backingFileName)
        try file.write(cluster, at: 0)
    }

    /// The incompatible feature bits alone (8 bytes at 72), synced: how
    /// qcow2_mark_dirty sets the dirty bit.
    func writeIncompatibleFeatures(_ features: IncompatibleFeatures) throws {
        try writeSynced(.incompatibleFeatures(features))
    }

    /// l1_size and l1_table_offset (12 bytes at 36), synced.
    func writeL1TableLocation(offset: UInt64, entries: UInt32) throws {
        try writeSynced(.l1TableLocation(offset: offset, entries: entries))
        header.l1TableOffset = offset
        header.l1Size = entries
    }

    /// refcount_table_offset and refcount_table_clusters (12 bytes at 48), synced.
    func writeRefcountTableLocation(offset: UInt64, clusters: UInt64) throws {
        try writeSynced(.refcountTableLocation(offset: offset, clusters: UInt32(clusters)))
        header.refcountTableOffset = offset
        header.refcountTableClusters = UInt32(clusters)
    }

    /// nb_snapshots and snapshots_offset (12 bytes at 60), synced: the switch
    /// to a new snapshot table.
    func writeSnapshotTableLocation(offset: UInt64, count: UInt32) throws {
        try writeSynced(.snapshotTableLocation(offset: offset, count: count))
        header.snapshotsOffset = offset
        header.snapshotCount = count
    }

    /// The guest size alone (8 bytes at 24), synced: the last step of a grow.
    func writeSize(_ size: UInt64) throws {
        try writeSynced(.size(size))
        header.size = size
    }

    private func writeSynced(_ update: HeaderFieldUpdate) throws {
        try file.write(update.bytes, at: update.offset)
        try file.flush()
    }
}
