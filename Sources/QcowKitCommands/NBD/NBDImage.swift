// The image qemu-nbd serves: opened with its backing chain and locked as
// qemu-nbd locks it (its block backend, plus the export's, which lets
// nobody resize the image while it is served); with -s, a temporary qcow2
// overlay on top takes the writes and is deleted at exit (BDRV_O_SNAPSHOT);
// with -l, reads see an internal snapshot (bdrv_snapshot_load_tmp).
import NBD
import Qcow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct NBDImage {
    let image: BlockImage
    /// The temporary overlay's path (-s), removed by `close`.
    let temporaryOverlay: String?

    static func open(_ options: NBDOptions) throws -> NBDImage {
        let path = options.file ?? ""
        if options.imageOpts { throw CommandFailure("--image-opts is not supported by qcowkit yet") }
        var format: ImageFormat?
        if let name = options.format {
            guard let known = ImageFormat(rawValue: name) else {
                throw CommandFailure("Failed to blk_new_open '\(path)': Unknown driver '\(name)'")
            }
            format = known
        }
        let writable = !options.readOnly && !options.snapshot
        var image: BlockImage
        do {
            image = try ReadCommands.openChain(path, format: options.format, writable: writable,
                                               access: VerbAccess.nbdExport(writable: writable),
                                               locking: ImageLocking(direct: options.direct))
        } catch let failure as CommandFailure {
            throw CommandFailure("Failed to blk_new_open '\(path)': \(reason(failure, path))")
        }
        if let snapshot = options.loadSnapshot {
            // -l implies -r: the image is open read-only, as loading needs.
            do { try snapshot.load(into: image) } catch {
                try? image.close()
                throw error
            }
        }
        guard options.snapshot else { return NBDImage(image: image, temporaryOverlay: nil) }
        let overlay: String
        do {
            overlay = try createOverlay(over: image, format: format ?? image.format)
        } catch {
            try? image.close()
            throw CommandFailure("Failed to blk_new_open '\(path)': Could not create temporary overlay: \(error)")
        }
        try? image.close()
        do {
            image = try ReadCommands.openChain(overlay, format: "qcow2", writable: !options.readOnly,
                                               access: VerbAccess.nbdExport(writable: !options.readOnly),
                                               locking: ImageLocking(direct: options.direct))
        } catch let failure as CommandFailure {
            unlink(overlay)
            throw CommandFailure("Failed to blk_new_open '\(path)': \(reason(failure, overlay))")
        }
        return NBDImage(image: image, temporaryOverlay: overlay)
    }

    /// The open failure without qemu-img's "Could not open 'PATH': " in
    /// front (qemu-nbd puts its own words there).
    private static func reason(_ failure: CommandFailure, _ path: String) -> String {
        let prefix = "Could not open '\(path)': "
        return failure.message.hasPrefix(prefix) ? String(failure.message.dropFirst(prefix.count)) : failure.message
    }

    func close() {
        try? image.flushIfWritable()
        try? image.close()
        if let temporaryOverlay { unlink(temporaryOverlay) }
    }

    /// A qcow2 file in $TMPDIR (else /var/tmp) over `image`, as QEMU's
    /// bdrv_append_temp_snapshot makes one.
    private static func createOverlay(over image: BlockImage, format: ImageFormat) throws -> String {
        let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/var/tmp"
        var template = Array("\(directory)/vl.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw Qcow2Error.io(step: "mkstemp", errno: errno) }
        Glibc.close(fd)
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        unlink(path)  // the name is ours; the creator makes the file anew
        var options = Qcow2CreateOptions(size: image.size)
        options.backingFile = absolute(image.filename)
        options.backingFormat = format.rawValue
        do {
            try Qcow2Creator.create(path: path, options: options)
        } catch {
            unlink(path)
            throw error
        }
        return path
    }

    private static func absolute(_ path: String) -> String {
        guard !path.hasPrefix("/"), let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + path
    }
}

extension BlockImage {
    /// Writes back what a writable image caches (before closing it at exit).
    func flushIfWritable() throws {
        if let writable = self as? WritableBlockImage, writable.isWritable { try writable.flush() }
    }
}
