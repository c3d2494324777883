// The image qemu-nbd serves: its operand read as qemu-img's verbs read
// theirs (a file name, a json: name, or --image-opts' block options, through
// ImageArgument and the one flat-options reader), opened with its backing
// chain and locked as qemu-nbd locks it (its block backend, plus the
// export's, which lets nobody resize the image while it is served); with -s,
// a temporary qcow2 overlay on top takes the writes and is deleted at exit
// (BDRV_O_SNAPSHOT); with -l, reads see an internal snapshot
// (bdrv_snapshot_load_tmp).
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
        let operand = options.file ?? ""
        // qemu-nbd's words in front of every open failure, where qemu-img
        // names the operand with "Could not open".
        func failure(_ error: CommandFailure) -> CommandFailure {
            let prefix = "Could not open '\(operand)': "
            let reason = error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
            return CommandFailure("Failed to blk_new_open '\(operand)': \(reason)")
        }
        let argument: ImageArgument
        do {
            argument = try ImageArgument(operand, format: options.format, imageOpts: options.imageOpts)
        } catch let error as CommandFailure {
            throw failure(error)
        }
        // With -s the image is the overlay's backing: read-only, locked as
        // a backing node for the export's use (bdrv_append_temp_snapshot).
        let writable = !options.readOnly && !options.snapshot
        let export = VerbAccess.nbdExport(writable: !options.readOnly)
        var image: BlockImage
        do {
            image = try ReadCommands.openChain(argument, writable: writable,
                                               access: options.snapshot ? export.forBacking : export,
                                               locking: ImageLocking(direct: options.direct))
        } catch let error as CommandFailure {
            throw failure(error)
        }
        if let snapshot = options.loadSnapshot {
            // -l implies -r: the image is open read-only, as loading needs.
            do { try snapshot.load(into: image) } catch {
                try? image.close()
                throw error
            }
        }
        guard options.snapshot else { return NBDImage(image: image, temporaryOverlay: nil) }
        do {
            let (overlay, path) = try openOverlay(over: image, writable: !options.readOnly, access: export,
                                                  locking: ImageLocking(direct: options.direct))
            return NBDImage(image: overlay, temporaryOverlay: path)
        } catch let error as CommandFailure {
            try? image.close()
            throw failure(error)
        }
    }

    func close() {
        try? image.flushIfWritable()
        try? image.close()
        if let temporaryOverlay { unlink(temporaryOverlay) }
    }

    /// A qcow2 file of the image's size in g_get_tmp_dir() ($TMPDIR, else
    /// /tmp; /tmp itself replaced by /var/tmp), with no backing file in its
    /// header: the open image is attached below it, as QEMU's
    /// bdrv_append_temp_snapshot does, so whatever options opened it hold.
    private static func openOverlay(over image: BlockImage, writable: Bool, access: BlockAccess,
                                    locking: ImageLocking) throws -> (Qcow2Image, String) {
        var directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if directory.isEmpty { directory = "/tmp" }
        if directory == "/tmp" { directory = "/var/tmp" }
        var template = Array("\(directory)/vl.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard fd >= 0 else {
            throw CommandFailure("Could not open temporary file '\(path)': \(String(cString: strerror(errno)))")
        }
        Glibc.close(fd)
        unlink(path)  // the name is ours; the creator makes the file anew
        do {
            try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: image.size))
            let opened = try BackingChain.open(path: path, format: .qcow2, writable: writable, at: .top,
                                               user: access, locking: locking, attachingBacking: false)
            guard let overlay = opened as? Qcow2Image else { throw Qcow2Error.io(step: "open overlay", errno: EINVAL) }
            overlay.attachBacking(image)
            return (overlay, path)
        } catch {
            unlink(path)
            throw CommandFailure("Could not create temporary overlay '\(path)': \(error)")
        }
    }
}

extension BlockImage {
    /// Writes back what a writable image caches (before closing it at exit).
    func flushIfWritable() throws {
        if let writable = self as? WritableBlockImage, writable.isWritable { try writable.flush() }
    }
}
