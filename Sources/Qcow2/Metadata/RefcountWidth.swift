// The width of a refcount entry (docs/interop/qcow2.txt, "Host cluster
// management"): refcount_bits = 1 << refcount_order, from 1 to 64 bits.

/// The width of a refcount entry: 1, 2, 4, 8, 16, 32 or 64 bits.
public struct RefcountWidth: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// refcount_order, 0...6.
    public let order: UInt32

    package init(order: UInt32) throws {
        guard order <= Qcow2Limits.maxRefcountOrder else { throw Qcow2Error.refcountWidthTooLarge(order: order) }
        self.order = order
    }

    /// The width for `bits` (1, 2, 4, ..., 64), or nil for any other value.
    public init?(bits: UInt64) {
        guard bits != 0, bits & (bits - 1) == 0, bits <= 64 else { return nil }
        order = UInt32(bits.trailingZeroBitCount)
    }

    /// QEMU's default: 16-bit refcounts (the only width of version 2 images).
    public static let sixteen = RefcountWidth(uncheckedOrder: 4)

    private init(uncheckedOrder: UInt32) { order = uncheckedOrder }

    /// The width in bits (`refcount_bits`).
    public var bits: UInt64 { 1 << UInt64(order) }

    /// The largest refcount an entry can hold: 2^bits - 1.
    package var maxValue: UInt64 { order == 6 ? .max : (1 << bits) - 1 }

    /// Entries in one refcount block of `clusterSize` bytes.
    package func entriesPerBlock(clusterSize: UInt64) -> UInt64 { (clusterSize * 8) >> UInt64(order) }

    /// Bytes needed for `entries` refcounts (a partial byte counts whole).
    package func byteCount(entries: UInt64) -> UInt64 { ((entries << UInt64(order)) + 7) / 8 }

    /// The width in bits, as qemu-img prints it.
    public var description: String { "\(bits)" }
}
