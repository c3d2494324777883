// Header fields rewritten in place, alone. QEMU changes a few fields of an
// open image with one small write rather than rewriting the header cluster:
// the feature bits (qcow2_mark_dirty sets the dirty bit this way), and the
// pointer to a moved L1 or refcount table, whose offset and size are
// adjacent so that one write switches both (a crash never leaves a header
// naming the new table with the old size).

/// Some adjacent fields of the fixed header, encoded: `bytes` go at `offset`.
struct HeaderFieldUpdate: Equatable, Sendable {
    let offset: UInt64
    let bytes: [UInt8]

    private init(at field: Int, _ bytes: [UInt8]) {
        offset = UInt64(field)
        self.bytes = bytes
    }

    /// incompatible_features (8 bytes at 72; version 3 only).
    static func incompatibleFeatures(_ features: IncompatibleFeatures) -> HeaderFieldUpdate {
        var bytes = [UInt8](repeating: 0, count: 8)
        bytes.setBE(features.rawValue, at: 0)
        return HeaderFieldUpdate(at: Qcow2Header.FieldOffset.incompatibleFeatures, bytes)
    }

    /// size, the guest size in bytes (8 bytes at 24): how qcow2_co_truncate
    /// records a grown image.
    static func size(_ bytes: UInt64) -> HeaderFieldUpdate {
        var encoded = [UInt8](repeating: 0, count: 8)
        encoded.setBE(bytes, at: 0)
        return HeaderFieldUpdate(at: Qcow2Header.FieldOffset.size, encoded)
    }

    /// l1_size and l1_table_offset (12 bytes at 36).
    static func l1TableLocation(offset: UInt64, entries: UInt32) -> HeaderFieldUpdate {
        let start = Qcow2Header.FieldOffset.l1Size
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.setBE(entries, at: Qcow2Header.FieldOffset.l1Size - start)
        bytes.setBE(offset, at: Qcow2Header.FieldOffset.l1TableOffset - start)
        return HeaderFieldUpdate(at: start, bytes)
    }

    /// nb_snapshots alone (4 bytes at 60): the check trimming the table.
    static func snapshotCount(_ count: UInt32) -> HeaderFieldUpdate {
        var bytes = [UInt8](repeating: 0, count: 4)
        bytes.setBE(count, at: 0)
        return HeaderFieldUpdate(at: Qcow2Header.FieldOffset.nbSnapshots, bytes)
    }

    /// nb_snapshots and snapshots_offset (12 bytes at 60): a snapshot table
    /// switched with one write.
    static func snapshotTableLocation(offset: UInt64, count: UInt32) -> HeaderFieldUpdate {
        let start = Qcow2Header.FieldOffset.nbSnapshots
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.setBE(count, at: Qcow2Header.FieldOffset.nbSnapshots - start)
        bytes.setBE(offset, at: Qcow2Header.FieldOffset.snapshotsOffset - start)
        return HeaderFieldUpdate(at: start, bytes)
    }

    /// refcount_table_offset and refcount_table_clusters (12 bytes at 48).
    static func refcountTableLocation(offset: UInt64, clusters: UInt32) -> HeaderFieldUpdate {
        let start = Qcow2Header.FieldOffset.refcountTableOffset
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.setBE(offset, at: Qcow2Header.FieldOffset.refcountTableOffset - start)
        bytes.setBE(clusters, at: Qcow2Header.FieldOffset.refcountTableClusters - start)
        return HeaderFieldUpdate(at: start, bytes)
    }
}
