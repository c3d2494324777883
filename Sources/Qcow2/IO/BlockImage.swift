// What every image format offers the tools above it: a guest-visible disk of a
// fixed size that can be read anywhere, and a block-status query in the terms
// of QEMU's block layer (what `qemu-img map` and `convert` are built on).
//
// Concurrency: `read(into:at:)` and `blockStatus(at:length:)` may be called
// from several threads at once. Implementations keep their metadata caches
// under a lock and do data I/O outside it (positional reads on a shared
// descriptor). The write path extends this protocol with writes, zero writes
// and discards under the same rules.

/// A guest disk of a fixed size: reads anywhere, block status per layer,
/// and a backing chain. `Qcow2Image` and `RawImage` implement it.
public protocol BlockImage: AnyObject, Sendable {
    /// The image's format.
    var format: ImageFormat { get }
    /// The path the image was opened with (backing files: as resolved).
    var filename: String { get }
    /// The guest-visible size in bytes, as QEMU's block layer sees it: a whole
    /// number of 512-byte sectors (raw rounds the file's length up, qcow2
    /// rounds the header's size down).
    var size: UInt64 { get }
    /// The image reads fall through to where this one has nothing.
    var backing: BlockImage? { get }

    /// Fills `buffer` with the guest data at `offset`. The whole range must lie
    /// within `size`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws

    /// The status of the run of bytes starting at `offset` that this layer
    /// describes alike, at most `length` bytes (and never past `size`):
    /// QEMU's bdrv_co_block_status for this node with want_zero.
    /// `offset` must be below `size` and `length` non-zero.
    func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus

    /// Closes this image and the backing chain below it.
    func close() throws
}

/// One layer's answer to a block-status query.
public struct BlockStatus: Equatable, Sendable {
    /// Bytes (from the queried offset) this answer holds for; never zero.
    public var length: UInt64
    /// Data is stored for the range here (BDRV_BLOCK_DATA).
    public var isData: Bool
    /// The range reads as zeroes (BDRV_BLOCK_ZERO); may be set with `isData`
    /// when stored data is known to be zero (a hole in a preallocated file).
    public var isZero: Bool
    /// This layer decides the range's content; when false the backing does
    /// (BDRV_BLOCK_ALLOCATED, `present` in qemu-img map).
    public var isAllocated: Bool
    /// Where the range starts in `hostFile`, when it is stored there
    /// uncompressed and contiguously (BDRV_BLOCK_OFFSET_VALID).
    public var hostOffset: UInt64?
    /// The file holding the range at `hostOffset`.
    public var hostFile: String?

    /// A status with the given facts; `hostOffset` and `hostFile` when the
    /// range is stored contiguously in a file.
    public init(length: UInt64, isData: Bool, isZero: Bool, isAllocated: Bool,
                hostOffset: UInt64? = nil, hostFile: String? = nil) {
        self.length = length
        self.isData = isData
        self.isZero = isZero
        self.isAllocated = isAllocated
        self.hostOffset = hostOffset
        self.hostFile = hostFile
    }
}

extension BlockImage {
    /// Reads `count` bytes at `offset` into a new array.
    /// Throws what `read(into:at:)` throws.
    public func read(_ count: Int, at offset: UInt64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return bytes
    }

    /// The images from this one down to the bottom of its backing chain.
    public var chain: [BlockImage] {
        var images: [BlockImage] = [self]
        while let next = images[images.count - 1].backing { images.append(next) }
        return images
    }

    /// The host file holding this image (formats QcowKit implements all have one).
    func hostFileIdentity() throws -> FileIdentity? {
        switch self {
        case let qcow2 as Qcow2Image: return try qcow2.file.identity()
        case let raw as RawImage: return try raw.file.identity()
        default: return nil
        }
    }

    /// Throws unless [offset, offset + length) lies within the image.
    func checkRange(_ offset: UInt64, _ length: Int) throws {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(length))
        guard !overflow, end <= size else {
            throw Qcow2Error.requestOutOfRange(offset: offset, length: UInt64(length), size: size)
        }
    }

    /// Throws unless a block-status query is well formed.
    func checkStatusQuery(_ offset: UInt64, _ length: UInt64) throws {
        guard offset < size, length > 0 else {
            throw Qcow2Error.requestOutOfRange(offset: offset, length: length, size: size)
        }
    }
}
