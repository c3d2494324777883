// `qcowkit rebase`: qemu-img 7.2's img_rebase. Unsafe mode (-u) opens the
// image without its backing file and rewrites only the header's backing
// name and format. Safe mode opens the old chain and the new backing file
// (or finds it in the old chain), copies into the image whatever would read
// differently (RebaseCopy), then rewrites the header. A backing name needs
// a backing format (-F), as qemu-img 7.2 requires; -b "" drops the backing.
// -c, which qemu-img 7.2 does not have (QEMU 8.2 added it), writes what is
// copied as compressed clusters.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

enum Rebase {
    /// The format names QEMU 7.2's qemu-img knows (bdrv_find_format): a
    /// header may name any of them, though only qcow2 and raw open here.
    static let qemuFormats: Set<String> = [
        "blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress", "copy-before-write", "copy-on-read",
        "dmg", "file", "ftp", "ftps", "gluster", "host_cdrom", "host_device", "http", "https", "iscsi", "iser",
        "luks", "nbd", "nfs", "null-aio", "null-co", "nvme", "parallels", "preallocate", "qcow", "qcow2", "qed",
        "quorum", "raw", "rbd", "replication", "snapshot-access", "ssh", "throttle", "vdi", "vhdx", "vmdk", "vpc",
        "vvfat",
    ]

    /// `arguments` follow the verb: options and the image.
    static func run(_ arguments: [String]) throws {
        var format: String?
        var backingFormat: String?
        var backing: String?
        var unsafe = false
        var showProgress = false
        var quiet = false
        var compress = false
        var cache = "writeback"
        var sourceCache = "writeback"
        var backingLocking = ImageLocking.standard
        var imageOpts = false
        var getopt = VerbGetopt("rebase", arguments)
        while let (option, argument) = try getopt.next() {
            switch option {
            case UInt8(ascii: "f"): format = argument
            case UInt8(ascii: "F"): backingFormat = argument
            case UInt8(ascii: "b"): backing = argument
            case UInt8(ascii: "u"): unsafe = true
            case UInt8(ascii: "p"): showProgress = true
            case UInt8(ascii: "t"): cache = argument
            case UInt8(ascii: "T"): sourceCache = argument
            case QemuImgVerb.imageOpts.code: imageOpts = true
            case UInt8(ascii: "q"): quiet = true
            case UInt8(ascii: "c"): compress = true
            case UInt8(ascii: "U"): backingLocking = .forceShared  // the backing files only, as qemu-img
            default: break
            }
        }
        let operands = getopt.operands
        guard operands.count == 1 else { throw VerbGetopt.usageError("Expecting one image file name") }
        if !unsafe && backing == nil {
            throw VerbGetopt.usageError("Must specify backing file (-b) or use unsafe mode (-u)")
        }
        let filename = operands[0]

        let progress = QemuProgress(enabled: showProgress && !quiet, minSkip: 2)
        progress.print(0, max: 100)
        defer { progress.end() }
        let cacheMode = try CacheModeArgument.check(cache)
        let sourceCacheMode = try CacheModeArgument.check(sourceCache, what: "source")
        backingLocking.direct = sourceCacheMode.wantsDirectIO

        if compress && unsafe { throw CommandFailure("Compression is not supported in unsafe mode") }
        let image = try ImageVerbs.openWritable(ImageArgument(filename, format: format, imageOpts: imageOpts),
                                             withBacking: !unsafe, cache: cacheMode)
        defer { try? image.close() }
        if compress && !(image is Qcow2Image) { throw CommandFailure("Compression not supported for this file format") }
        if let backingFormat, !Self.qemuFormats.contains(backingFormat) {
            throw CommandFailure("Invalid format name: '\(backingFormat)'")
        }

        if !unsafe, let backing {
            var newBacking: BlockImage?
            var prefix: BlockImage?
            if !backing.isEmpty {
                let path = BackingReference.fullName(backing, relativeTo: filename)
                if let found = BackingChain.find(named: path, below: image) {
                    prefix = found
                    newBacking = found
                } else {
                    newBacking = try Self.openNewBacking(path, named: backing, format: backingFormat, locking: backingLocking)
                }
            }
            defer { if prefix == nil { try? newBacking?.close() } }
            // Qcow2Image and RawImage opened for writing both are.
            guard let writable = image as? WritableBlockImage else { throw CommandFailure("Image cannot be written") }
            do {
                try RebaseCopy.run(image: writable, oldBacking: image.backing, newBacking: newBacking,
                                   prefix: prefix, compress: compress, flushEachWrite: cacheMode.flushesEachWrite) {
                    progress.print(Float($0), max: 100)
                }
            } catch {
                throw CommandFailure("\(error)")
            }
        }

        try Self.changeBackingFile(of: image, to: backing, format: backingFormat)
        progress.print(100, max: 0)
    }

    /// blk_new_open on the new backing file (read-only, with its own chain).
    private static func openNewBacking(_ path: String, named name: String, format: String?,
                                       locking: ImageLocking) throws -> BlockImage {
        do {
            let known = try format.map { try ImageFormat(name: $0) }
            return try ImageOpener.open(path: path, format: known, writable: false, locking: locking)
        } catch Qcow2Error.backingFormatUnknown(let driver) {
            throw CommandFailure("Could not open new backing file '\(name)': Unknown driver '\(driver)'")
        } catch {
            throw CommandFailure("Could not open new backing file '\(name)': \(error)")
        }
    }

    /// bdrv_change_backing_file with require=true, and qemu-img's messages.
    private static func changeBackingFile(of image: BlockImage, to backing: String?, format: String?) throws {
        let name = backing.flatMap { $0.isEmpty ? nil : $0 }
        let shown = backing ?? "(null)"
        var code: Int32 = 0
        if name != nil && format == nil {
            code = EINVAL
        } else if let qcow2 = image as? Qcow2Image {
            do {
                try qcow2.changeBackingFile(name: name, format: name == nil ? nil : format)
            } catch {
                code = Qcow2Error.errnoValue(of: error)
            }
        } else {
            code = ENOTSUP
        }
        switch code {
        case 0: return
        case ENOSPC: throw CommandFailure("Could not change the backing file to '\(shown)': No space left in the file header")
        case EINVAL where name != nil && format == nil:
            throw CommandFailure("Could not change the backing file to '\(shown)': backing format must be specified")
        default: throw CommandFailure("Could not change the backing file to '\(shown)': \(String(cString: strerror(code)))")
        }
    }
}
