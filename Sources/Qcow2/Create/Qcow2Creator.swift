// Creating qcow2 images: the public entry point. Like QEMU 7.2's
// qcow2_co_create, creation goes through the code that writes images, so
// the result is byte for byte what `qemu-img create` writes:
//  1. the file is created (replacing an existing one only when asked to),
//     then the options are checked; a failure after that removes the file;
//  2. the bootstrap image: a header of size 0 without an L1 table, a
//     one-cluster refcount table at cluster 1 naming an empty refcount block
//     at cluster 2;
//  3. that image is opened for writing with flushes ignored (QEMU's
//     BDRV_O_NO_FLUSH) and clusters 0-2 are allocated through it;
//  4. it is grown to its size with the preallocation mode (Write/Grow.swift);
//  5. the backing file is named and the final header written by the write
//     path's header update; closing writes the caches, and the file is
//     synced once at the end.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Creates qcow2 images as `qemu-img create -f qcow2` does.
public enum Qcow2Creator {
    /// QEMU's BDRV_MAX_LENGTH: the largest image the block layer allows.
    static let maxImageLength: UInt64 = UInt64(Int64.max) & ~((1 << 30) - 1)

    /// Creates `path` with a new qcow2 image, byte for byte what
    /// `qemu-img create -f qcow2` writes for the same options. The size is
    /// rounded up to a multiple of 512 bytes. An existing file is refused
    /// (`Qcow2Error.Creation.fileExists`) unless `replacing` is true, in which
    /// case it is truncated and overwritten, as qemu-img does.
    /// Throws `Qcow2Error.creation` with qemu-img's reason (options refused,
    /// file exists or cannot be created, resizing failed); the file is removed.
    public static func create(path: String, options: Qcow2CreateOptions, replacing: Bool = false) throws {
        try create(path: path, options: options, refcountBits: nil, replacing: replacing)
    }

    /// `create`, with a refcount width asked for as bits, which may fit no
    /// image (see `Qcow2CreateOptions.validate(refcountBits:)`).
    package static func create(path: String, options: Qcow2CreateOptions, refcountBits: UInt64?, replacing: Bool) throws {
        let file = try createFile(path: path, replacing: replacing)
        var image: Qcow2Image?
        do {
            try options.validate(refcountBits: refcountBits)
            var options = options
            options.size = (options.size &+ 511) & ~UInt64(511)
            let opened = try openBootstrap(file, options: options)
            image = opened
            try finish(opened, options: options)
            image = nil
            file.ignoresFlushes = false
            try file.flush()
            try file.close()
        } catch {
            // Nothing more is written: the file goes.
            try? image?.closeKeepingFile()
            try? file.close()
            unlink(path)
            throw translate(error)
        }
    }

    /// What QEMU leaves when options are refused after the file was created:
    /// nothing. Creates `path` (so that creation errors come first, an
    /// existing file refused unless `replacing`) and removes it again.
    package static func abandon(path: String, replacing: Bool = false) throws {
        let file = try createFile(path: path, replacing: replacing)
        try? file.close()
        unlink(path)
    }

    static func createFile(path: String, replacing: Bool) throws -> BlockFile {
        do {
            return try BlockFile.create(path: path, replacing: replacing)
        } catch Qcow2Error.io(_, EEXIST) where !replacing {
            throw Qcow2Error.creation(.fileExists(path: path))
        } catch let Qcow2Error.io(_, code) {
            throw Qcow2Error.creation(.couldNotCreate(path: path, errno: code))
        }
    }

    /// Writes the bootstrap image into `file` and opens it for writing,
    /// clusters 0-2 allocated. `options` must be validated.
    private static func openBootstrap(_ file: BlockFile, options: Qcow2CreateOptions) throws -> Qcow2Image {
        let width = options.refcountWidth
        let clusterSize = options.clusterSize
        var header = Qcow2Header(
            version: options.version.rawValue, clusterBits: UInt32(clusterSize.trailingZeroBitCount), size: 0,
            refcountOrder: width.order, compressionType: options.compressionType)
        if options.extendedL2 { header.incompatibleFeatures.insert(.extendedL2) }
        if options.lazyRefcounts { header.compatibleFeatures.insert(.lazyRefcounts) }
        header.refcountTableOffset = clusterSize
        header.refcountTableClusters = 1
        var bootstrap = header.encode()
        bootstrap += [UInt8](repeating: 0, count: Int(clusterSize) - bootstrap.count)
        var table = [UInt64](repeating: 0, count: Int(clusterSize / 8))
        table[0] = 2 * clusterSize
        bootstrap += RefcountTable(entries: table).encode()
        bootstrap += [UInt8](repeating: 0, count: Int(clusterSize))
        try file.write(bootstrap, at: 0)

        // Writes are ordered as QEMU orders them, but none is synced.
        file.ignoresFlushes = true
        let image = try Qcow2Image(file: file)
        try image.withWriter { writer, _ in
            let first = try writer.allocator.allocateClusters(3 * clusterSize)
            guard first == 0 else { throw Qcow2Error.corruptMetadata("first cluster in empty image is already in use") }
        }
        return image
    }

    /// Gives the image its size and its backing file, writes its final
    /// header and closes it (the file stays open).
    private static func finish(_ image: Qcow2Image, options: Qcow2CreateOptions) throws {
        let size = options.size
        guard size <= UInt64(Int64.max) else { throw Qcow2Error.creation(.couldNotResize(reason: "Image size cannot be negative")) }
        guard size <= maxImageLength else {
            throw Qcow2Error.creation(.couldNotResize(reason: "offset(\(size)) exceeds maximum(\(maxImageLength))"))
        }
        do {
            try image.grow(to: size, preallocation: options.preallocation)
        } catch let Qcow2Error.io(step, code) where code != EFBIG {
            throw Qcow2Error.creation(.couldNotResize(reason: "\(step): \(errnoDescription(code))"))
        }
        try writeFinalHeader(image, backingFile: options.backingFile, backingFormat: options.backingFormat)
        try image.closeKeepingFile()
    }

    /// qcow2_change_backing_file on the new image, or the plain header
    /// update without one: the whole header cluster, extensions included.
    private static func writeFinalHeader(_ image: Qcow2Image, backingFile: String?, backingFormat: String?) throws {
        guard image.isWritable else { throw Qcow2Error.readOnly }
        let fail = { (code: Int32) in
            Qcow2Error.creation(.couldNotAssignBackingFile(name: backingFile ?? "", format: backingFormat, errno: code))
        }
        if let name = backingFile, name.utf8.count > Int(Qcow2Limits.maxBackingFileNameLength) { throw fail(EINVAL) }
        do {
            try image.withWriter { writer, _ in
                writer.backingFileName = backingFile
                writer.extensions = backingFile != nil ? backingFormat.map { [.backingFormat($0)] } ?? [] : []
                try writer.writeHeaderCluster()
            }
        } catch let Qcow2Error.writeFailed(code, _) {
            throw fail(code)
        }
    }

    /// EFBIG from anywhere reads as "image too large", as qemu-img reports it.
    private static func translate(_ error: Error) -> Error {
        switch error {
        case is FileTooLarge, Qcow2Error.io(_, EFBIG):
            return Qcow2Error.creation(.imageTooLarge(format: "qcow2", clusterSizeHint: true))
        case let Qcow2Error.creation(error) where error.isFileTooLarge:
            return Qcow2Error.creation(.imageTooLarge(format: "qcow2", clusterSizeHint: true))
        default:
            return error
        }
    }
}
