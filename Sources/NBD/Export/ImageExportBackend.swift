// An opened image (qcow2 with its backing chain, or raw) as an export, with
// the block-backend options qemu-nbd gives its image: the discard mode
// (--discard), zero detection (--detect-zeroes) and write-through caching
// (--cache=writethrough/directsync). Block status goes through the chain as
// QEMU's bdrv_block_status_above and bdrv_is_allocated_above do.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

/// QEMU's detect-zeroes option: writes of all-zero buffers become zero
/// writes (`unmap`: which may release space when discards are allowed).
public enum NBDDetectZeroes: String, Sendable, CaseIterable {
    case off, on, unmap
}

/// An image served as an export. The image stays the caller's: it is not
/// closed here.
public final class ImageExportBackend: NBDExportBackend {
    public let image: BlockImage
    private let writable: WritableBlockImage?
    /// Trims and may-trim zero writes release space (--discard=unmap); with
    /// the default (ignore) a trim does nothing, as in qemu-nbd.
    public let discardUnmap: Bool
    public let detectZeroes: NBDDetectZeroes
    /// Every write is flushed before it is acknowledged (cache=writethrough).
    public let writeThrough: Bool

    /// Serves `image`; writes are taken when it was opened for writing and
    /// `readOnly` is false.
    public init(image: BlockImage, readOnly: Bool, discardUnmap: Bool = false,
                detectZeroes: NBDDetectZeroes = .off, writeThrough: Bool = false) {
        self.image = image
        let writable = image as? WritableBlockImage
        self.writable = (readOnly || writable?.isWritable != true) ? nil : writable
        self.discardUnmap = discardUnmap
        self.detectZeroes = detectZeroes
        self.writeThrough = writeThrough
    }

    public var size: UInt64 { image.size }
    public var isReadOnly: Bool { writable == nil }
    /// Any byte is addressable: under O_DIRECT the file layer bounces
    /// unaligned requests (qemu-nbd -n advertises 1 as well).
    public var requestAlignment: UInt32 { 1 }
    public var maxTransfer: UInt32 { NBDProtocol.maxBufferSize }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try mapErrors { try image.read(into: buffer, at: offset) }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {
        let target = try writableImage()
        if detectZeroes != .off, !buffer.isEmpty, Self.isZero(buffer) {
            let unmap = detectZeroes == .unmap && discardUnmap
            try mapErrors { try target.writeZeroes(at: offset, length: UInt64(buffer.count), mayUnmap: unmap) }
        } else {
            try mapErrors { try target.write(buffer, at: offset) }
        }
        if fua || writeThrough { try flush() }
    }

    public func writeZeroes(at offset: UInt64, length: UInt64, mayTrim: Bool, fastZero: Bool, fua: Bool) throws {
        let target = try writableImage()
        let unmap = mayTrim && discardUnmap
        if fastZero {
            try mapErrors { try Self.zeroWithoutFallback(target, offset, length, mayUnmap: unmap) }
        } else {
            try mapErrors { try target.writeZeroes(at: offset, length: length, mayUnmap: unmap) }
        }
        if fua || writeThrough { try flush() }
    }

    public func trim(at offset: UInt64, length: UInt64, fua: Bool) throws {
        let target = try writableImage()
        if discardUnmap { try mapErrors { try target.discard(at: offset, length: length) } }
        if fua { try flush() }
    }

    public func flush() throws {
        guard let writable else { return }
        try mapErrors { try writable.flush() }
    }

    /// QEMU's CACHE: a copy-on-read prefetch into the top image
    /// (BlockImage.copyOnRead). A read-only export answers EPERM where data
    /// would be copied and lets zero runs be (qemu-nbd 7.2 -r zeroes them in
    /// its in-memory metadata, answers success, and fails to write that back
    /// at exit).
    public func cache(at offset: UInt64, length: UInt64) throws {
        try mapErrors { try image.copyOnRead(at: offset, length: length, into: writable) }
    }

    public func allocation(at offset: UInt64, length: UInt64) throws -> NBDAllocationExtent {
        NBDAllocationExtent(try mapErrors { try image.chainBlockStatus(at: offset, length: length) })
    }

    public func allocationDepth(at offset: UInt64, length: UInt64) throws -> NBDDepthExtent {
        NBDDepthExtent(try mapErrors { try image.chainBlockStatus(at: offset, length: length) })
    }

    // MARK: Helpers

    private func writableImage() throws -> WritableBlockImage {
        guard let writable else { throw NBDExportError(.perm, "Export is read-only") }
        return writable
    }

    /// Zeroes a range only where that needs no writing of zero buffers
    /// (BDRV_REQ_NO_FALLBACK): qcow2 v3 has zero clusters; raw asks the
    /// file system; qcow2 v2 cannot.
    private static func zeroWithoutFallback(_ image: WritableBlockImage, _ offset: UInt64, _ length: UInt64,
                                            mayUnmap: Bool) throws {
        switch image {
        case let raw as RawImage:
            try raw.writeZeroes(at: offset, length: length, mayUnmap: mayUnmap, allowFallback: false)
        case let qcow2 as Qcow2Image where qcow2.header.version >= 3:
            try qcow2.writeZeroes(at: offset, length: length, mayUnmap: mayUnmap)
        default:
            throw NBDExportError(.notSupported, "Operation not supported")
        }
    }

    private static func isZero(_ buffer: UnsafeRawBufferPointer) -> Bool {
        buffer.allSatisfy { $0 == 0 }
    }

    private func mapErrors<T>(_ body: () throws -> T) throws -> T { try NBDExportError.mapping(body) }
}
