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

public struct Qcow2CreateOptions: Equatable, Sendable {
    /// Virtual size in bytes; rounded up to a multiple of 512 on creation.
    public var size: UInt64
    public var clusterSize: UInt64 = 65536
    /// 2 for compat=0.10, 3 for compat=1.1.
    public var version: UInt32 = 3
    public var compressionType: CompressionType = .zlib
    public var extendedL2 = false
    public var lazyRefcounts = false
    /// Any value is accepted here; validation refuses all but 1, 2, 4, ..., 64.
    public var refcountBits: UInt64 = 16
    public var preallocation: Preallocation = .off
    /// Stored as given (not resolved); nil for no backing file.
    public var backingFile: String?
    /// Stored in the backing format header extension.
    public var backingFormat: String?

    public init(size: UInt64) { self.size = size }

    /// Checks the options as QEMU does, first failure first.
    public func validate() throws {
        if extendedL2 && version < 3 { throw Qcow2CreateError.extendedL2NeedsVersion3 }
        let bits = clusterSize.trailingZeroBitCount
        guard clusterSize != 0, clusterSize & (clusterSize - 1) == 0,
              (Int(Qcow2Limits.minClusterBits)...Int(Qcow2Limits.maxClusterBits)).contains(bits)
        else { throw Qcow2CreateError.invalidClusterSize }
        if extendedL2 && clusterSize < Self.minimumExtendedL2ClusterSize {
            throw Qcow2CreateError.extendedL2ClusterTooSmall(minimum: Self.minimumExtendedL2ClusterSize)
        }
        if backingFile != nil && preallocation != .off && !extendedL2 {
            throw Qcow2CreateError.backingWithPreallocation
        }
        if backingFormat != nil && backingFile == nil { throw Qcow2CreateError.backingFormatWithoutBackingFile }
        if lazyRefcounts && version < 3 { throw Qcow2CreateError.lazyRefcountsNeedVersion3 }
        guard RefcountWidth(bits: refcountBits) != nil else { throw Qcow2CreateError.invalidRefcountWidth }
        if version < 3 && refcountBits != 16 { throw Qcow2CreateError.refcountWidthNeedsVersion3 }
        if compressionType != .zlib && version < 3 { throw Qcow2CreateError.compressionTypeNeedsVersion3 }
        guard version == 2 || version == 3 else { throw Qcow2Error.unsupportedVersion(version) }
    }

    /// 32 subclusters of at least 512 bytes each.
    public static let minimumExtendedL2ClusterSize: UInt64 = 16384
}
