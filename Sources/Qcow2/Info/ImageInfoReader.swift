// Builds ImageInfo the way qemu-img info does: open the image without its
// backing file and without touching guest data, probe the format if none is
// named, and read only metadata (header, extensions, snapshot table, bitmap
// directory) and the file's size. With a chain, follow backing names one
// image at a time, refusing loops and chains deeper than the limit.

public struct ImageInfoReport: Sendable {
    public var images: [ImageInfo]
    public var warnings: [ImageInfoWarning]
}

public enum ImageInfoReader {
    /// Info for `path`, and with `backingChain` for every image below it.
    /// `format` is a format name as given to -f; nil probes.
    public static func read(path: String, format: String?, backingChain: Bool) throws -> ImageInfoReport {
        var report = ImageInfoReport(images: [], warnings: [])
        var seen: Set<String> = []
        var next: (path: String, format: String?)? = (path, format)
        while let (current, currentFormat) = next {
            guard !seen.contains(current) else { throw ImageInfoError.backingLoop(path: current) }
            guard report.images.count < Qcow2Limits.maxBackingChainDepth else {
                throw ImageInfoError.chainTooDeep(limit: Qcow2Limits.maxBackingChainDepth)
            }
            seen.insert(current)
            let info = try readOne(path: current, format: currentFormat, warnings: &report.warnings)
            report.images.append(info)
            next = nil
            if backingChain, let backing = info.fullBackingFilename {
                if BackingReference.isPseudoProtocol(backing) {
                    throw ImageInfoError.couldNotOpen(
                        path: backing, reason: Qcow2Error.pseudoProtocolBackingRefused(backing).description)
                }
                next = (backing, info.backingFilenameFormat)
            }
        }
        return report
    }

    /// Info for one image, without following its backing file.
    public static func readOne(path: String, format: String?, warnings: inout [ImageInfoWarning]) throws -> ImageInfo {
        var chosen: ImageFormat?
        if let format {
            guard let known = ImageFormat(rawValue: format) else {
                throw ImageInfoError.couldNotOpen(path: path, reason: "Unknown driver '\(format)'")
            }
            chosen = known
        }
        let file: BlockFile
        do {
            file = try BlockFile(path: path, writable: false)
        } catch {
            throw ImageInfoError.openFailure(path: path, error: error)
        }
        do {
            let resolved = try chosen ?? ImageFormat.probe(file)
            switch resolved {
            case .raw: return try raw(file: file, filename: path)
            case .qcow2: return try qcow2(image: Qcow2Image(file: file), filename: path, warnings: &warnings)
            }
        } catch let error as ImageInfoError {
            throw error
        } catch {
            throw ImageInfoError.couldNotOpen(path: path, reason: "\(error)")
        }
    }

    /// A raw image: its size is the file's, in whole 512-byte sectors
    /// (rounded up, as QEMU counts sectors).
    public static func raw(file: BlockFile, filename: String) throws -> ImageInfo {
        let size = try file.size()
        var info = ImageInfo(filename: filename, format: "raw", virtualSize: alignUp(size, 512) ?? size)
        info.dirtyFlag = false
        info.actualSize = try? file.allocatedSize()
        return info
    }

    /// A qcow2 image, from what the header and its tables say.
    public static func qcow2(image: Qcow2Image, filename: String, warnings: inout [ImageInfoWarning]) throws -> ImageInfo {
        let h = image.header
        // QEMU counts whole sectors: a size that is not a multiple of 512 is cut.
        var info = ImageInfo(filename: filename, format: "qcow2", virtualSize: h.size & ~511)
        info.dirtyFlag = h.isDirty
        info.actualSize = try? image.file.allocatedSize()
        info.clusterSize = h.clusterSize

        // The stored name is a C string in QEMU: it ends at a NUL.
        if let stored = image.backingFileName.map({ String($0.unicodeScalars.prefix { $0 != "\0" }) }), !stored.isEmpty {
            info.backingFilename = stored
            info.fullBackingFilename = hasProtocol(stored) ? stored : BackingReference.resolve(stored, relativeTo: filename)
            if let format = image.backingFormat, !format.isEmpty { info.backingFilenameFormat = format }
        }

        let table = try SnapshotTable.read(from: image)
        if !table.entries.isEmpty { info.snapshots = table.entries.map(SnapshotInfo.init) }

        info.formatSpecific = try formatSpecific(image: image, warnings: &warnings)
        return info
    }

    /// qcow2's format-specific information (header flags and persistent
    /// bitmaps), as qemu-img info and qemu-io's info print it.
    public static func formatSpecific(image: Qcow2Image, warnings: inout [ImageInfoWarning]) throws -> Qcow2FormatInfo {
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

    /// QEMU's path_has_protocol: a colon before any slash ("nbd:", "json:").
    /// Such names are used as they are, never joined to a directory.
    static func hasProtocol(_ name: String) -> Bool {
        guard let colon = name.firstIndex(of: ":") else { return false }
        return !name[..<colon].contains("/")
    }
}
