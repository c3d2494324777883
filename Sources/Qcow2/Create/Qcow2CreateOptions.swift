// What `qemu-img create -f qcow2 -o ...` can ask for, validated in the order
// and with the messages of QEMU 7.2's qcow2_co_create.

/// How much of a new image is allocated up front (QEMU's PreallocMode).
public enum Preallocation: String, Sendable, CaseIterable {
    /// Header, refcount structures and the L1 table only.
    case off
    /// Also every L2 table, with entries pointing at reserved data clusters.
    case metadata
    /// Metadata, and the data clusters reserved with fallocate().
    case falloc
    /// Metadata, and the data clusters written with zeroes.
    case full
}

/// The qcow2 version a new image gets (qemu-img's `compat` option).
public enum Qcow2Version: UInt32, Sendable, CaseIterable {
    /// compat=0.10: no feature bits, 16-bit refcounts, zlib only.
    case v2 = 2
    /// compat=1.1: feature bits, lazy refcounts, other refcount widths,
    /// extended L2 entries and zstd.
    case v3 = 3
}

/// What a new qcow2 image is made with (`qemu-img create -f qcow2 -o ...`);
/// the defaults are qemu-img's.
public struct Qcow2CreateOptions: Equatable, Sendable {
    /// Virtual size in bytes; rounded up to a multiple of 512 on creation.
    public var size: UInt64
    /// A power of two from 512 bytes to 2 MiB; validation refuses others.
    public var clusterSize: UInt64 = 65536
    /// The image's version (`compat`).
    public var version: Qcow2Version = .v3
    /// How compressed clusters are compressed; zstd needs version 3.
    public var compressionType: CompressionType = .zlib
    /// 32 subclusters per cluster (version 3, clusters of at least 16 KiB).
    public var extendedL2 = false
    /// Refcount updates may be deferred while the image is dirty (version 3).
    public var lazyRefcounts = false
    /// The width of a refcount entry; widths other than 16 need version 3.
    public var refcountWidth: RefcountWidth = .sixteen
    /// How much of the image is allocated up front.
    public var preallocation: Preallocation = .off
    /// Stored as given (not resolved); nil for no backing file.
    public var backingFile: String?
    /// Stored in the backing format header extension.
    public var backingFormat: String?

    /// Options for an image of `size` bytes, everything else qemu-img's default.
    public init(size: UInt64) { self.size = size }

    /// Checks the options as QEMU does, first failure first. Throws
    /// `Qcow2Error.creation` with the reason.
    public func validate() throws { try validate(refcountBits: nil) }

    /// `validate()`, with `refcountBits` (when given) as the width asked for
    /// instead of `refcountWidth`: a width no `RefcountWidth` has fails at
    /// its place in QEMU's order, as qemu-img reports `refcount_bits=3`.
    package func validate(refcountBits: UInt64?) throws {
        let version = self.version.rawValue
        if extendedL2 && version < 3 { throw Qcow2Error.creation(.extendedL2NeedsVersion3) }
        let bits = clusterSize.trailingZeroBitCount
        guard clusterSize != 0, clusterSize & (clusterSize - 1) == 0,
              (Int(Qcow2Limits.minClusterBits)...Int(Qcow2Limits.maxClusterBits)).contains(bits)
        else { throw Qcow2Error.creation(.invalidClusterSize) }
        if extendedL2 && clusterSize < Self.minimumExtendedL2ClusterSize {
            throw Qcow2Error.creation(.extendedL2ClusterTooSmall(minimum: Self.minimumExtendedL2ClusterSize))
        }
        if backingFile != nil && preallocation != .off && !extendedL2 {
            throw Qcow2Error.creation(.backingWithPreallocation)
        }
        if backingFormat != nil && backingFile == nil { throw Qcow2Error.creation(.backingFormatWithoutBackingFile) }
        if lazyRefcounts && version < 3 { throw Qcow2Error.creation(.lazyRefcountsNeedVersion3) }
        let width = try refcountBits.map { bits in
            guard let width = RefcountWidth(bits: bits) else { throw Qcow2Error.creation(.invalidRefcountWidth) }
            return width
        } ?? refcountWidth
        if version < 3 && width != .sixteen { throw Qcow2Error.creation(.refcountWidthNeedsVersion3) }
        if compressionType != .zlib && version < 3 { throw Qcow2Error.creation(.compressionTypeNeedsVersion3) }
    }

    /// 32 subclusters of at least 512 bytes each.
    package static let minimumExtendedL2ClusterSize: UInt64 = 16384
}
