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

    private typealias F = Qcow2Header.FieldOffset

    /// One big-endian field at its header offset.
    private enum Field {
        case u32(Int, UInt32)
        case u64(Int, UInt64)

        var start: Int {
            switch self { case let .u32(at, _): at; case let .u64(at, _): at }
        }
        var end: Int {
            switch self { case let .u32(at, _): at + 4; case let .u64(at, _): at + 8 }
        }
    }

    /// The fields, which must be adjacent, as one run of bytes.
    private init(_ fields: Field...) {
        let start = fields.map(\.start).min() ?? 0
        var bytes = [UInt8](repeating: 0, count: (fields.map(\.end).max() ?? start) - start)
        for field in fields {
            switch field {
            case let .u32(at, value): bytes.setBE(value, at: at - start)
            case let .u64(at, value): bytes.setBE(value, at: at - start)
            }
        }
        offset = UInt64(start)
        self.bytes = bytes
    }

    /// incompatible_features (8 bytes at 72; version 3 only).
    static func incompatibleFeatures(_ features: IncompatibleFeatures) -> HeaderFieldUpdate {
        HeaderFieldUpdate(.u64(F.incompatibleFeatures, features.rawValue))
    }

    /// size, the guest size in bytes (8 bytes at 24): how qcow2_co_truncate
    /// records a grown image.
    static func size(_ bytes: UInt64) -> HeaderFieldUpdate {
        HeaderFieldUpdate(.u64(F.size, bytes))
    }

    /// l1_size and l1_table_offset (12 bytes at 36).
    static func l1TableLocation(offset: UInt64, entries: UInt32) -> HeaderFieldUpdate {
        HeaderFieldUpdate(.u32(F.l1Size, entries), .u64(F.l1TableOffset, offset))
    }

    /// nb_snapshots alone (4 bytes at 60): the check trimming the table.
    static func snapshotCount(_ count: UInt32) -> HeaderFieldUpdate {
        HeaderFieldUpdate(.u32(F.nbSnapshots, count))
    }

    /// nb_snapshots and snapshots_offset (12 bytes at 60): a snapshot table
    /// switched with one write.
    static func snapshotTableLocation(offset: UInt64, count: UInt32) -> HeaderFieldUpdate {
        HeaderFieldUpdate(.u32(F.nbSnapshots, count), .u64(F.snapshotsOffset, offset))
    }

    /// refcount_table_offset and refcount_table_clusters (12 bytes at 48).
    static func refcountTableLocation(offset: UInt64, clusters: UInt32) -> HeaderFieldUpdate {
        HeaderFieldUpdate(.u64(F.refcountTableOffset, offset), .u32(F.refcountTableClusters, clusters))
    }
}
