// What an NBD export serves: a disk of a fixed size with QEMU's block-layer
// operations behind the protocol's commands. The server checks every
// request's range, flags and the read-only bit before it reaches the
// backend, so a backend sees only in-range requests of its own kind.
// `ImageExportBackend` serves an opened image (qcow2 with its backing
// chain, or raw); `qcowkit serve` serves block-graph nodes through its own.

/// The disk behind an export. Methods may be called from several threads
/// at once (requests of one or more connections); each throws an
/// `NBDExportError` (or any error, answered as EIO) when the request fails.
public protocol NBDExportBackend: AnyObject, Sendable {
    /// The size clients see, in bytes (QEMU rounds it down to 512-byte sectors).
    var size: UInt64 { get }
    /// Writes, trims and zero writes are refused (NBD_FLAG_READ_ONLY).
    var isReadOnly: Bool { get }
    /// The smallest unit the backend reads and writes without
    /// read-modify-write (QEMU's request_alignment): the minimum block size
    /// advertised to clients that ask for block sizes.
    var requestAlignment: UInt32 { get }
    /// The largest request the backend takes at once (capped at 32 MiB).
    var maxTransfer: UInt32 { get }

    /// Fills `buffer` with the data at `offset`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
    /// Writes `buffer` at `offset`; with `fua` it is durable before returning.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws
    /// Makes the range read as zeroes. `mayTrim`: the space may be released
    /// (no NBD_CMD_FLAG_NO_HOLE). `fastZero`: fail with `.notSupported`
    /// rather than zero by writing (NBD_CMD_FLAG_FAST_ZERO).
    func writeZeroes(at offset: UInt64, length: UInt64, mayTrim: Bool, fastZero: Bool, fua: Bool) throws
    /// Drops the range's data where the format allows it (advisory).
    func trim(at offset: UInt64, length: UInt64, fua: Bool) throws
    /// Makes every completed write durable.
    func flush() throws
    /// Brings the range into the cache, as a read would (advisory).
    func cache(at offset: UInt64, length: UInt64) throws
    /// base:allocation: the run at `offset` (at most `length`, never 0) that
    /// reads alike through the whole backing chain.
    func allocation(at offset: UInt64, length: UInt64) throws -> NBDAllocationExtent
    /// qemu:allocation-depth: the run at `offset` (at most `length`, never 0)
    /// decided by one layer, and that layer's depth.
    func allocationDepth(at offset: UInt64, length: UInt64) throws -> NBDDepthExtent
}

/// One base:allocation answer.
public struct NBDAllocationExtent: Equatable, Sendable {
    public var length: UInt64
    /// No data is stored (NBD_STATE_HOLE).
    public var isHole: Bool
    /// The range reads as zeroes (NBD_STATE_ZERO).
    public var isZero: Bool
    public init(length: UInt64, isHole: Bool, isZero: Bool) {
        self.length = length
        self.isHole = isHole
        self.isZero = isZero
    }
    /// The extent's flags on the wire.
    var flags: UInt32 { (isHole ? NBDProtocol.stateHole : 0) | (isZero ? NBDProtocol.stateZero : 0) }
}

/// One qemu:allocation-depth answer: 0 unallocated in the whole chain,
/// 1 the top image, 2 its backing, and so on.
public struct NBDDepthExtent: Equatable, Sendable {
    public var length: UInt64
    public var depth: UInt32
    public init(length: UInt64, depth: UInt32) {
        self.length = length
        self.depth = depth
    }
}
