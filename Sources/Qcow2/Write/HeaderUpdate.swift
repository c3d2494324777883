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
    func writeHeaderClusterLocked() throws {
        var h = header
        h.size = imageSize
        h.l1Size = UInt32(map.l1.count)
        h.refcountTableOffset = allocator.tableOffset
        h.refcountTableClusters = UInt32(allocator.tableClusters)
        let cluster = try HeaderCluster.encode(header: h, extensions: extensions, backingFileName: backingFileName)
        try file.write(cluster, at: 0)
    }

    /// The incompatible feature bits alone (8 bytes at 72), synced: how
    /// qcow2_mark_dirty sets the dirty bit.
    func writeIncompatibleFeaturesLocked(_ features: IncompatibleFeatures) throws {
        var bytes = [UInt8](repeating: 0, count: 8)
        bytes.setBE(features.rawValue, at: 0)
        try file.write(bytes, at: 72)
        try file.flush()
    }

    /// l1_size and l1_table_offset (12 bytes at 36), synced.
    func writeL1TableLocationLocked(offset: UInt64, entries: UInt32) throws {
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.setBE(entries, at: 0)
        bytes.setBE(offset, at: 4)
        try file.write(bytes, at: 36)
        try file.flush()
        header.l1TableOffset = offset
        header.l1Size = entries
    }

    /// refcount_table_offset and refcount_table_clusters (12 bytes at 48), synced.
    func writeRefcountTableLocation(offset: UInt64, clusters: UInt64) throws {
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.setBE(offset, at: 0)
        bytes.setBE(UInt32(clusters), at: 8)
        try file.write(bytes, at: 48)
        try file.flush()
        header.refcountTableOffset = offset
        header.refcountTableClusters = UInt32(clusters)
    }
}
