// Header writes of the write path, each as QEMU makes it:
//  - qcow2_update_header rewrites the whole first cluster (clearing the
//    dirty bit, setting the corrupt bit, dropping unknown autoclear bits):
//    the fixed header, the backing format, QEMU's feature name table
//    (version 3 with clusters over 4 KiB), unknown extensions, the end
//    marker, then the backing file name (stale bitmaps are dropped, as QEMU
//    drops them);
//  - table moves and the dirty bit patch only their fields, synced, so that
//    the header never names a table before it is on disk.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// qcow2_update_header.
    func writeHeaderClusterLocked() throws {
        var h = header
        h.size = imageSize
        h.l1Size = UInt32(map.l1.count)
        h.refcountTableOffset = allocator.tableOffset
        h.refcountTableClusters = UInt32(allocator.tableClusters)

        var records: [HeaderExtension] = []
        for case let .backingFormat(format) in extensions { records.append(.backingFormat(format)) }
        if version >= 3 && clusterSize > HeaderCluster.featureTableMinimumClusterSize {
            records.append(.featureNameTable(FeatureName.qemuTable))
        }
        // Images with bitmaps in use are not written (DirtyBit.swift); stale
        // bitmaps QEMU drops when it rewrites the header.
        for case let .unknown(type, data) in extensions { records.append(.unknown(type: type, data: data)) }
        let extensionBytes = HeaderExtension.encodeAll(records)

        let nameBytes = backingFileName.map { Array($0.utf8) } ?? []
        let fixedLength = h.encodedLength
        guard UInt64(fixedLength + extensionBytes.count + nameBytes.count) <= clusterSize else {
            throw Qcow2Error.writeFailed(errno: ENOSPC, reason: "The header does not fit its cluster")
        }
        if backingFileName != nil {
            h.backingFileOffset = UInt64(fixedLength + extensionBytes.count)
            h.backingFileSize = UInt32(nameBytes.count)
        } else {
            h.backingFileOffset = 0
            h.backingFileSize = 0
        }
        var cluster = h.encode() + extensionBytes + nameBytes
        cluster += [UInt8](repeating: 0, count: Int(clusterSize) - cluster.count)
        try file.write(cluster, at: 0)
    }

    /// The incompatible feature bits alone (8 bytes at 72), synced: how
    /// qcow2_mark_dirty sets the dirty bit.
    func writeIncompatibleFeaturesLocked(_ features: IncompatibleFeatures) throws {
        try writeSynced(.incompatibleFeatures(features))
    }

    /// l1_size and l1_table_offset (12 bytes at 36), synced.
    func writeL1TableLocationLocked(offset: UInt64, entries: UInt32) throws {
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

    private func writeSynced(_ update: HeaderFieldUpdate) throws {
        try file.write(update.bytes, at: update.offset)
        try file.flush()
    }
}
