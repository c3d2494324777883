// What `qemu-img info` reports about one image (QEMU's ImageInfo), computed
// from the header, its extensions, the snapshot table and the file's size
// alone, so that images whose data cannot be read still describe themselves.
// Optional members are the ones QEMU leaves out when they do not apply.
// The QMP server's query-named-block-nodes reports the same structure.

/// What `qemu-img info` says about one image (QEMU's ImageInfo).
public struct ImageInfo: Equatable, Sendable {
    /// The name the image was opened by (for a backing image: its resolved name).
    public var filename: String
    /// "qcow2" or "raw".
    public var format: String
    /// Whether the image is marked dirty (qcow2 only).
    public var dirtyFlag: Bool?
    /// Bytes allocated on the host ("disk size"); nil if unknown.
    public var actualSize: UInt64?
    /// The guest-visible size in bytes.
    public var virtualSize: UInt64
    /// The cluster size in bytes (qcow2 only).
    public var clusterSize: UInt64?
    /// The backing file name exactly as stored in the image.
    public var backingFilename: String?
    /// The backing file name resolved against the image's own name.
    public var fullBackingFilename: String?
    /// The backing format the image names, if any.
    public var backingFilenameFormat: String?
    /// Internal snapshots; nil when there are none.
    public var snapshots: [SnapshotInfo]?
    /// The qcow2-specific part (qcow2 only).
    public var formatSpecific: Qcow2FormatInfo?

    package init(filename: String, format: String, virtualSize: UInt64) {
        self.filename = filename
        self.format = format
        self.virtualSize = virtualSize
    }
}

/// One internal snapshot as QEMU reports it (QEMU's SnapshotInfo).
public struct SnapshotInfo: Equatable, Sendable {
    /// The snapshot's ID ("1", "2", ...).
    public var id: String
    /// The snapshot's name.
    public var name: String
    /// Bytes of saved VM state.
    public var vmStateSize: Int64
    /// When the snapshot was taken: seconds since the epoch...
    public var dateSeconds: Int64
    /// ...and nanoseconds.
    public var dateNanoseconds: Int64
    /// The guest clock at the snapshot: seconds...
    public var vmClockSeconds: Int64
    /// ...and nanoseconds.
    public var vmClockNanoseconds: Int64
    /// The instruction count at the snapshot, when recorded.
    public var icount: Int64?

    package init(
        id: String, name: String, vmStateSize: Int64, dateSeconds: Int64, dateNanoseconds: Int64,
        vmClockSeconds: Int64, vmClockNanoseconds: Int64, icount: Int64?
    ) {
        self.id = id
        self.name = name
        self.vmStateSize = vmStateSize
        self.dateSeconds = dateSeconds
        self.dateNanoseconds = dateNanoseconds
        self.vmClockSeconds = vmClockSeconds
        self.vmClockNanoseconds = vmClockNanoseconds
        self.icount = icount
    }

    /// QEMU copies names into fixed buffers (128 bytes for the ID, 256 for
    /// the name, NUL included) and stops at a NUL, as C strings do.
    package init(_ entry: SnapshotEntry) {
        func cString(_ bytes: [UInt8], capacity: Int) -> String {
            String(decoding: bytes.prefix { $0 != 0 }.prefix(capacity - 1), as: UTF8.self)
        }
        id = cString(entry.idBytes, capacity: 128)
        name = cString(entry.nameBytes, capacity: 256)
        vmStateSize = Int64(truncatingIfNeeded: entry.vmStateSize)
        dateSeconds = Int64(entry.dateSeconds)
        dateNanoseconds = Int64(entry.dateNanoseconds)
        vmClockSeconds = Int64(truncatingIfNeeded: entry.vmClockNanoseconds / 1_000_000_000)
        vmClockNanoseconds = Int64(entry.vmClockNanoseconds % 1_000_000_000)
        icount = entry.icount.map { Int64(truncatingIfNeeded: $0) }
    }
}

/// qcow2's "Format specific information" (QEMU's ImageInfoSpecificQCow2).
public struct Qcow2FormatInfo: Equatable, Sendable {
    /// "0.10" for version 2, "1.1" for version 3.
    public var compat: String
    // The members below are version 3 only (nil for version 2).
    /// Whether the image has extended L2 entries (version 3 only).
    public var extendedL2: Bool?
    /// Whether lazy refcounts are on (version 3 only).
    public var lazyRefcounts: Bool?
    /// Whether the image is marked corrupt (version 3 only).
    public var corrupt: Bool?
    /// The width of a refcount entry in bits.
    public var refcountBits: UInt64
    /// Persistent dirty bitmaps; nil when there are none.
    public var bitmaps: [BitmapInfo]?
    /// How compressed clusters are coded.
    public var compressionType: CompressionType

    package init(compat: String, refcountBits: UInt64, compressionType: CompressionType) {
        self.compat = compat
        self.refcountBits = refcountBits
        self.compressionType = compressionType
    }
}

/// A persistent dirty bitmap as QEMU reports it (Qcow2BitmapInfo).
public struct BitmapInfo: Equatable, Sendable {
    /// A bitmap's flags as qemu-img names them.
    public enum Flag: String, Sendable {
        case inUse = "in-use"
        case auto = "auto"
    }
    /// The bitmap's name.
    public var name: String
    /// Bytes of guest data per bit.
    public var granularity: UInt32
    /// The bitmap's flags (in-use, auto).
    public var flags: [Flag]

    package init(name: String, granularity: UInt32, flags: [Flag]) {
        self.name = name
        self.granularity = granularity
        self.flags = flags
    }
}
