// Builds ImageInfo the way qemu-img info does: open the image without its
// backing file and without touching guest data, probe the format if none is
// named, and read only metadata (header, extensions, snapshot table, bitmap
// directory) and the file's size. With a chain, follow backing names one
// image at a time, as far as `BackingChain`'s policy allows.

/// What `qemu-img info` reports: one `ImageInfo` per image, top first,
/// and the warnings met on the way.
public struct ImageInfoReport: Sendable {
    /// The image and, with a backing chain, every image below it.
    public var images: [ImageInfo]
    /// Warnings to print before the info.
    public var warnings: [ImageInfoWarning]
}

/// Reads `ImageInfo` as `qemu-img info` does, metadata only.
public enum ImageInfoReader {
    /// Info for `path`, and with `backingChain` for every image below it.
    /// `format` is a format name as given to -f; nil probes. Like qemu-img,
    /// each image is opened alone, without its backing file; `BackingChain`
    /// decides which link may be followed.
    /// Throws `Qcow2Error` (`couldNotOpen`, `backingFileCreatesLoop`,
    /// `backingChainTooDeep`) worded as qemu-img info words it. Each file is
    /// locked as qemu-img info locks it: no permission needed (no guest
    /// I/O), but a qcow2 image's writers refused (`lockConflict`) unless
    /// `locking` shares everything.
    public static func read(path: String, format: String?, backingChain: Bool,
                            locking: ImageLocking = .standard) throws -> ImageInfoReport {
        var report = ImageInfoReport(images: [], warnings: [])
        var position = BackingChainPosition.top
        var current = (path: path, format: format)
        while true {
            let (info, identity) = try readOne(path: current.path, format: current.format, at: position,
                                               locking: locking, warnings: &report.warnings)
            report.images.append(info)
            guard backingChain,
                  let link = BackingLink(name: info.backingFilename, format: info.backingFilenameFormat,
                                         overlayPath: current.path) else { break }
            do {
                current = (try link.target(), link.format)
                position = try position.backing(of: identity)
            } catch let error as Qcow2Error {
                if case .backingChainTooDeep = error { throw error }
                throw Qcow2Error.couldNotOpen(path: link.name, reason: error.description)
            }
        }
        return report
    }

    /// Info for one image, without following its backing file.
    package static func readOne(path: String, format: String?, warnings: inout [ImageInfoWarning]) throws -> ImageInfo {
        try readOne(path: path, format: format, at: .top, locking: .standard, warnings: &warnings).info
    }

    /// Info for the image at `position` of a chain, and its file's identity;
    /// a file already above it is a loop, in qemu-img info's words.
    private static func readOne(path: String, format: String?, at position: BackingChainPosition,
                                locking: ImageLocking,
                                warnings: inout [ImageInfoWarning]) throws -> (info: ImageInfo, identity: FileIdentity) {
        var chosen: ImageFormat?
        if let format {
            guard let known = ImageFormat(rawValue: format) else {
                throw Qcow2Error.couldNotOpen(path: path, reason: "Unknown driver '\(format)'")
            }
            chosen = known
        }
        let file: BlockFile
        do {
            file = try BlockFile(path: path, writable: false, locking: locking.mode)
        } catch {
            throw Qcow2Error.openFailure(path: path, error: error)
        }
        do {
            let identity = try file.identity()
            do {
                try position.check(identity, path: path)
            } catch {
                throw Qcow2Error.backingFileCreatesLoop(path: path)
            }
            let format = try chosen ?? ImageFormat.probe(file)
            try file.setAccess(BlockAccess.none.forFile(of: format, writable: false, withoutIO: true,
                                                        forceShare: locking.forceShare))
            switch format {
            case .raw: return (try raw(file: file, filename: path), identity)
            case .qcow2: return (try qcow2(image: Qcow2Image(file: file), filename: path, warnings: &warnings), identity)
            }
        } catch Qcow2Error.backingFileCreatesLoop(let loopPath) {
            throw Qcow2Error.backingFileCreatesLoop(path: loopPath)
        } catch {
            throw Qcow2Error.couldNotOpen(path: path, reason: "\(error)")
        }
    }

    /// A raw image: its size is the file's, in whole 512-byte sectors
    /// (rounded up, as QEMU counts sectors).
    package static func raw(file: BlockFile, filename: String) throws -> ImageInfo {
        let size = try file.size()
        var info = ImageInfo(filename: filename, format: "raw", virtualSize: alignUp(size, 512) ?? size)
        info.dirtyFlag = false
        info.actualSize = try? file.allocatedSize()
        return info
    }

    /// A qcow2 image, from what the header and its tables say.
    package static func qcow2(image: Qcow2Image, filename: String, warnings: inout [ImageInfoWarning]) throws -> ImageInfo {
        let h = image.header
        // QEMU counts whole sectors: a size that is not a multiple of 512 is cut.
        var info = ImageInfo(filename: filename, format: "qcow2", virtualSize: h.size & ~511)
        info.dirtyFlag = h.isDirty
        info.actualSize = try? image.file.allocatedSize()
        info.clusterSize = h.clusterSize

        if let link = BackingLink(name: image.backingFileName, format: image.backingFormat, overlayPath: filename) {
            info.backingFilename = link.name
            info.fullBackingFilename = BackingReference.fullName(link.name, relativeTo: filename)
            info.backingFilenameFormat = link.format
        }

        let table = try SnapshotTable.read(from: image)
        if !table.entries.isEmpty { info.snapshots = table.entries.map(SnapshotInfo.init) }

        info.formatSpecific = try formatSpecific(image: image, warnings: &warnings)
        return info
    }

    /// qcow2's format-specific information (header flags and persistent
    /// bitmaps), as qemu-img info and qemu-io's info print it.
    package static func formatSpecific(image: Qcow2Image, warnings: inout [ImageInfoWarning]) throws -> Qcow2FormatInfo {
        let h = image.header
        let bitmaps = try BitmapDirectory.read(image: image, warnings: &warnings)
        var specific = Qcow2FormatInfo(
            compat: h.version >= 3 ? "1.1" : "0.10", refcountBits: h.refcountBits, compressionType: h.compressionType)
        if h.version >= 3 {
            specific.lazyRefcounts = h.hasLazyRefcounts
            specific.corrupt = h.isCorrupt
            specific.extendedL2 = h.hasExtendedL2
            specific.bitmaps = bitmaps
        }
        return specific
    }
}
