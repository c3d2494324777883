// `qcowkit create`: qemu-img 7.2's `create`, step for step (img_create, then
// bdrv_img_create): option lists, the size, the backing file (opened to check
// it and, without a size, to take its size), the "Formatting ..." line, then
// the format's own checks and the image.

import Qcow2
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct Create: ParsedVerb {
    var format = "raw"
    var backingFile: String?
    var backingFormat: String?
    /// -o, each occurrence (joined with commas, as qemu-img accumulates them).
    var options: [String] = []
    var quiet = false
    /// -u: the backing file is not opened (a size is then needed).
    var unsafeBacking = false
    /// FILE [SIZE].
    var arguments: [String] = []

    /// qemu-img create's command line after the verb, read as img_create
    /// reads it (VerbGetopt).
    static func parse(_ words: [String]) throws(ExitCode) -> Create {
        var create = Create()
        var options = VerbGetopt("create", words)
        while let (code, value) = try options.next() {
            switch code {
            case UInt8(ascii: "F"): create.backingFormat = value
            case UInt8(ascii: "b"): create.backingFile = value
            case UInt8(ascii: "f"): create.format = value
            case UInt8(ascii: "o"): create.options.append(value)
            case UInt8(ascii: "q"): create.quiet = true
            case UInt8(ascii: "u"): create.unsafeBacking = true
            default: break
            }
        }
        create.arguments = options.operands
        return create
    }

    func run() throws {
        var list: String?
        for o in options {
            guard CreationOptionSet.isValidList(o) else { throw CommandFailure("Invalid option list: \(o)") }
            list = list.map { $0 + "," + o } ?? o
        }
        let filename = arguments.first
        if let list, CreationOptionSet.wantsHelp(list) {
            guard CreationOptionCatalog.descriptors(format: format) != nil else {
                throw CommandFailure("Unknown file format '\(format)'")
            }
            Terminal.print(CreationOptionSet.help(format: format, withFileName: filename != nil), terminator: "")
            return
        }
        guard let filename else { throw usageError("Expecting image file name") }
        var imageSize: UInt64?
        if arguments.count > 1 {
            imageSize = try ImageSizeArgument.parse(arguments[1]) { Terminal.printError(ProgramName.prefixed("warning: " + $0)) }
        }
        if arguments.count > 2 { throw usageError("Unexpected argument: \(arguments[2])") }

        do {
            try createImage(filename: filename, optionList: list, imageSize: imageSize)
        } catch let failure as CommandFailure {
            // An empty message was printed already.
            if failure.message.isEmpty { throw failure }
            throw CommandFailure("\(filename): " + failure.message, status: failure.status)
        } catch {
            throw CommandFailure("\(filename): \(error)")
        }
    }

    private func usageError(_ message: String) -> CommandFailure {
        CommandFailure(message + "\nTry '\(ProgramName.current) --help' for more information")
    }

    /// bdrv_img_create: everything after the command line is read.
    private func createImage(filename: String, optionList: String?, imageSize: UInt64?) throws {
        guard let descriptors = CreationOptionCatalog.descriptors(format: format) else {
            throw CommandFailure("Unknown file format '\(format)'")
        }
        var opts = CreationOptionSet(descriptors: descriptors)
        if let optionList { try opts.parse(optionList) }

        // No size anywhere is QEMU's size -1, which a backing file may replace.
        if !opts.isSet("size") {
            opts.setNumber("size", imageSize ?? .max)
        } else if imageSize != nil {
            throw CommandFailure("The image size must be specified only once")
        }
        if let backingFile {
            guard opts.accepts("backing_file") else {
                throw CommandFailure("Backing file not supported for file format '\(format)'")
            }
            try opts.set("backing_file", backingFile)
        }
        if let backingFormat {
            guard opts.accepts("backing_fmt") else {
                throw CommandFailure("Backing file format not supported for file format '\(format)'")
            }
            try opts.set("backing_fmt", backingFormat)
        }
        for d in descriptors where d.isUnsupported && opts.isSet(d.name) {
            throw CommandFailure("Option '\(d.name)' is not supported by qcowkit")
        }

        let backing = opts["backing_file"]?.text
        let backingFmt = opts["backing_fmt"]?.text
        if let backing {
            if backing == filename {
                throw CommandFailure("Error: Trying to create an image with the same filename as the backing file")
            }
            if backing.isEmpty { throw CommandFailure("Expected backing file name, got empty string") }
        }

        var size = opts["size"]?.number ?? .max
        if let backing, !unsafeBacking {
            let resolved = BackingReference.resolve(backing, relativeTo: filename)
            let (detected, length) = try BackingImage.inspect(path: resolved, format: backingFmt)
            guard backingFmt != nil else {
                // qemu-img ends this hint without a newline; so do we.
                Terminal.flushStandardOutput()
                fputs(ProgramName.prefixed("\(filename): Backing file specified without backing format") + "\n"
                      + "Detected format of \(detected).", stderr)
                throw CommandFailure("")
            }
            if size == .max {
                size = length
                opts.setNumber("size", length)
            }
        } else if backing != nil && backingFmt == nil {
            throw CommandFailure("Backing file specified without backing format")
        }
        if size == .max { throw CommandFailure("Image creation needs a size parameter") }

        if !quiet { Terminal.print("Formatting '\(filename)', fmt=\(format) " + opts.printed()) }

        let extentSizeHint = opts["extent_size_hint"]?.number ?? 0
        if format == "qcow2" {
            // The file protocol reads its option first.
            opts.warnAgainForHexSizes(["extent_size_hint"])
            if extentSizeHint > UInt64(UInt32.max) { throw CommandFailure("Extent size hint is too large") }
            try createQcow2(filename: filename, size: size, opts: opts)
        } else {
            opts.warnAgainForHexSizes(["extent_size_hint", "size"])
            var preallocation = Preallocation.off
            if let text = opts["preallocation"]?.text {
                guard let mode = Preallocation(rawValue: text) else { throw CommandFailure("invalid parameter value: \(text)") }
                preallocation = mode
            }
            if extentSizeHint > UInt64(UInt32.max) { throw CommandFailure("Extent size hint is too large") }
            try RawCreator.create(path: filename, size: size, preallocation: preallocation, replacing: true)
        }
    }

    /// The qcow2 options, read as QEMU's QAPI visitor reads them (after the
    /// file was created: a bad value removes it), then the image.
    private func createQcow2(filename: String, size: UInt64, opts: CreationOptionSet) throws {
        let options: (options: Qcow2CreateOptions, unfitRefcountBits: UInt64?)
        do {
            options = try Self.qcow2Options(opts, size: size)
        } catch {
            try Qcow2Creator.abandon(path: filename, replacing: true)
            throw error
        }
        try Qcow2Creator.create(path: filename, options: options.options, refcountBits: options.unfitRefcountBits,
                                replacing: true)
    }

    /// The qcow2 options of an option list, read in the order of QEMU's
    /// QAPI schema (the order decides which error a bad list reports).
    /// A refcount_bits no image can have is returned apart: QEMU refuses it
    /// while creating, after the errors that come first in its order.
    static func qcow2Options(_ opts: CreationOptionSet, size: UInt64) throws
        -> (options: Qcow2CreateOptions, unfitRefcountBits: UInt64?) {
        var o = Qcow2CreateOptions(size: size)
        o.extendedL2 = opts["extended_l2"]?.flag ?? false
        opts.warnAgainForHexSizes(["size"])
        if let compat = opts["compat"]?.text {
            switch compat {
            case "0.10", "v2": o.version = .v2
            case "1.1", "v3": o.version = .v3
            default: throw CommandFailure("Parameter 'version' does not accept value '\(compat)'")
            }
        }
        o.backingFile = opts["backing_file"]?.text
        if let fmt = opts["backing_fmt"]?.text {
            guard BackingImage.qemuDrivers.contains(fmt) else {
                throw CommandFailure("Parameter 'backing-fmt' does not accept value '\(fmt)'")
            }
            o.backingFormat = fmt
        }
        opts.warnAgainForHexSizes(["cluster_size"])
        o.clusterSize = opts["cluster_size"]?.number ?? 65536
        if let text = opts["preallocation"]?.text {
            guard let mode = Preallocation(rawValue: text) else {
                throw CommandFailure("Parameter 'preallocation' does not accept value '\(text)'")
            }
            o.preallocation = mode
        }
        o.lazyRefcounts = opts["lazy_refcounts"]?.flag ?? false
        var unfitRefcountBits: UInt64?
        if let value = opts["refcount_bits"] {
            // QAPI reads it again, as a signed 64-bit integer.
            guard CreationOptionSet.fitsInt64(value.text) else {
                throw CommandFailure("Parameter 'refcount-bits' expects integer")
            }
            if let width = RefcountWidth(bits: value.number) {
                o.refcountWidth = width
            } else {
                unfitRefcountBits = value.number
            }
        }
        if let text = opts["compression_type"]?.text {
            guard let type = CompressionType(name: text) else {
                throw CommandFailure("Parameter 'compression-type' does not accept value '\(text)'")
            }
            o.compressionType = type
        }
        return (o, unfitRefcountBits)
    }
}

/// The backing file as `create` opens it: to check that it opens and to
/// learn its format and size.
enum BackingImage {
    /// QEMU 7.2's block drivers (BlockdevDriver) as this build of qemu-img
    /// knows them: any of them may be recorded as a backing format with -u.
    static let qemuDrivers: Set<String> = [
        "blkdebug", "blklogwrites", "blkreplay", "blkverify", "bochs", "cloop", "compress",
        "copy-before-write", "copy-on-read", "dmg", "file", "snapshot-access", "ftp", "ftps",
        "gluster", "host_cdrom", "host_device", "http", "https", "iscsi", "luks", "nbd", "nfs",
        "null-aio", "null-co", "nvme", "parallels", "preallocate", "qcow", "qcow2", "qed",
        "quorum", "raw", "rbd", "replication", "ssh", "throttle", "vdi", "vhdx", "vmdk", "vpc", "vvfat",
    ]

    /// Opens `path` as `format` (probed when nil) with its whole chain, as
    /// one link below the new image; returns the format and the size the new
    /// image inherits (whole 512-byte sectors, as QEMU counts them: rounded
    /// up for raw, down for qcow2).
    static func inspect(path: String, format: String?) throws -> (format: String, size: UInt64) {
        let hint = "\nCould not open backing image."
        if let format, format != "qcow2" && format != "raw" {
            guard qemuDrivers.contains(format) else { throw CommandFailure("Unknown driver '\(format)'" + hint) }
            throw CommandFailure("Backing file format '\(format)' is not supported by qcowkit" + hint)
        }
        let image: BlockImage
        do {
            // As qemu-img create: shared, without I/O permissions, so no
            // lock is taken on the backing chain.
            image = try BackingChain.open(path: path, format: format.flatMap(ImageFormat.init(rawValue:)),
                                          writable: false, at: .belowNewOverlay,
                                          user: .none, locking: .forceShared, withoutIO: true)
        } catch {
            throw CommandFailure("\(error)" + hint)
        }
        defer { try? image.close() }
        if let qcow2 = image as? Qcow2Image { return (image.format.rawValue, qcow2.header.size / 512 * 512) }
        return (image.format.rawValue, image.size)
    }
}
