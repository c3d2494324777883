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

    /// QEMU's CACHE is a copy-on-read prefetch (bdrv_co_do_copy_on_readv):
    /// over the range widened to whole clusters, each run the top image does
    /// not decide, at most MAX_BOUNCE_BUFFER at a time, is read through the
    /// chain and written into the top whole: as a zero write if it reads as
    /// zeroes, else as data (so a run of backing data and zeroes becomes
    /// data, as in QEMU). A read-only export answers EPERM where data would
    /// be written and lets zero runs be (qemu-nbd 7.2 zeroes them in its
    /// metadata cache, answers success, and fails to write that back at exit).
    public func cache(at offset: UInt64, length: UInt64) throws {
        guard length > 0, image.backing != nil else { return }
        let cluster = (image as? Qcow2Image)?.header.clusterSize ?? 512
        let start = offset / cluster * cluster
        let end = min(image.size, (offset + length + cluster - 1) / cluster * cluster)
        var position = start
        while position < end {
            let status = try mapErrors { try image.blockStatus(at: position, length: min(end - position, Self.maxBounceBuffer)) }
            let run = min(status.length, Self.maxBounceBuffer, end - position)
            guard run > 0 else { break }
            if !status.isAllocated { try copyUp(at: position, length: run) }
            position += run
        }
    }

    /// QEMU's MAX_BOUNCE_BUFFER (32768 sectors): the most copied up at once.
    static let maxBounceBuffer: UInt64 = 16 << 20

    /// Copies one run the chain below decides into the top image.
    private func copyUp(at position: UInt64, length: UInt64) throws {
        var data = [UInt8](repeating: 0, count: Int(length))
        try mapErrors { try data.withUnsafeMutableBytes { try image.read(into: $0, at: position) } }
        let zero = data.allSatisfy { $0 == 0 }
        if zero && writable == nil { return }
        guard let writable else { throw NBDExportError(.perm, "Operation not permitted") }
        try mapErrors {
            if zero {
                try writable.writeZeroes(at: position, length: length, mayUnmap: false)
            } else {
                try data.withUnsafeBytes { try writable.write($0, at: position) }
            }
        }
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
