// `qcowkit measure`: qemu-img measure. How large a new image of the output
// format (-O, raw by default, or qcow2 with -o options) gets: "required size"
// for the data a source image (through its backing chain) or an empty image
// of --size holds, "fully allocated size" with every cluster allocated, and
// for a qcow2 source of version 3 measured as qcow2 (compat 1.1), "bitmaps
// size" for its persistent bitmaps. The figures are QEMU 7.2's (qcow2_measure).
import Qcow2
import QemuJSON

enum Measure {
    struct Sizes: Equatable {
        var required: UInt64
        var fullyAllocated: UInt64
        var bitmaps: UInt64?
    }

    /// `argv` starts with the verb's name; returns the exit status.
    static func main(_ argv: [String]) -> Int32 {
        var json = false
        var format: String?
        var outputFormat = "raw"
        var options: [String] = []
        var snapshot: SnapshotParameter?
        var size: UInt64?
        var imageOpts = false
        let operands: [String]
        // measure's option string lacks ':': glibc reports a bad flag and
        // qemu-img shows its help (VerbGetopt does both).
        var locking = ImageLocking.standard
        let parsed = VerbGetopt.parse(argv) { code, value in
            switch code {
            case UInt8(ascii: "f"): format = value
            case UInt8(ascii: "O"): outputFormat = value
            case UInt8(ascii: "o"):
                guard CreationOptionSet.isValidList(value) else { return QemuImgFront.report("Invalid option list: \(value)") }
                options.append(value)
            case UInt8(ascii: "l"):
                do { snapshot = try SnapshotParameter(value) } catch { return QemuImgFront.report("\(error)") }
            case QemuImgVerb.imageOpts.code: imageOpts = true
            case QemuImgVerb.output.code:
                switch value {
                case "json": json = true
                case "human": json = false
                default: return QemuImgFront.report("--output must be used with human or json as argument.")
                }
            case 0x90:
                do {
                    size = try NumberArgument.parse("image size", value)
                } catch {
                    return QemuImgFront.report("\(error)")
                }
            case QemuImgVerb.forceShare.code: locking = .forceShared
            default: break
            }
            return nil
        }
        switch parsed {
        case let .exit(status): return status
        case let .operands(list): operands = list
        }
        if operands.count > 1 { return QemuImgFront.report("At most one filename argument is allowed.") }
        let filename = operands.first
        if filename == nil && (imageOpts || format != nil || snapshot != nil) {
            return QemuImgFront.report("--image-opts, -f, and -l require a filename argument.")
        }
        if filename != nil && size != nil { return QemuImgFront.report("--size N cannot be used together with a filename.") }
        if filename == nil && size == nil { return QemuImgFront.report("Either --size N or one filename must be specified.") }

        var source: BlockImage?
        if let filename {
            do { source = try ReadCommands.openChain(ImageArgument(filename, format: format, imageOpts: imageOpts), locking: locking) } catch { return QemuImgFront.report("\(error)") }
            if let snapshot, let opened = source {
                do { try snapshot.load(into: opened) } catch {
                    try? opened.close()
                    return QemuImgFront.report("\(error)")
                }
            }
        }
        defer { try? source?.close() }
        do {
            let sizes = try measure(outputFormat: outputFormat, options: options, size: size, source: source)
            Terminal.print(render(sizes, json: json), terminator: "")
            return 0
        } catch {
            return QemuImgFront.report("\(error)")
        }
    }

    /// The figures for `outputFormat` with the -o `options`, for `source`
    /// or for an empty image of `size`.
    static func measure(outputFormat: String, options: [String], size: UInt64?, source: BlockImage?) throws -> Sizes {
        guard let descriptors = CreationOptionCatalog.descriptors(format: outputFormat) else {
            if BackingImage.qemuDrivers.contains(outputFormat) {
                throw CommandFailure("Measuring for format '\(outputFormat)' is not supported by qcowkit")
            }
            throw CommandFailure("Unknown file format '\(outputFormat)'")
        }
        var opts = CreationOptionSet(descriptors: descriptors)
        do {
            for list in options { try opts.parse(list) }
        } catch {
            throw CommandFailure("\(error)\n" + ProgramName.prefixed("Invalid options for file format '\(outputFormat)'"))
        }
        if let size { opts.setNumber("size", size) }
        if outputFormat == "raw" {
            // Every byte of a raw image is its own; holes still count.
            let bytes = source.map { $0.size } ?? alignUp(opts["size"]?.number ?? 0, 512) ?? .max
            return Sizes(required: bytes, fullyAllocated: bytes, bitmaps: nil)
        }
        return try measureQcow2(opts, source: source)
    }

    /// qcow2_measure: the options read in QEMU's order, each with its message.
    private static func measureQcow2(_ opts: CreationOptionSet, source: BlockImage?) throws -> Sizes {
        let extendedL2 = opts["extended_l2"]?.flag ?? false
        let clusterSize = opts["cluster_size"]?.number ?? 65536
        guard clusterSize.nonzeroBitCount == 1, (512...(2 << 20)).contains(clusterSize) else {
            throw CommandFailure("Cluster size must be a power of two between 512 and 2048k")
        }
        if extendedL2 && clusterSize < 16384 {
            throw CommandFailure("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes")
        }
        var version = 3
        if let compat = opts["compat"]?.text {
            switch compat {
            case "0.10": version = 2
            case "1.1": version = 3
            default: throw CommandFailure("Invalid compatibility level: '\(compat)'")
            }
        }
        let refcountBits = opts["refcount_bits"]?.number ?? 16
        guard let width = RefcountWidth(bits: refcountBits) else {
            throw CommandFailure("Refcount width must be a power of two and may not exceed 64 bits")
        }
        if version < 3 && refcountBits != 16 {
            throw CommandFailure("Different refcount widths than 16 bits require compatibility level 1.1 or above "
                                 + "(use compat=1.1 or greater)")
        }
        var preallocation = Preallocation.off
        if let text = opts["preallocation"]?.text {
            guard let mode = Preallocation(rawValue: text) else { throw CommandFailure("invalid parameter value: \(text)") }
            preallocation = mode
        }
        let hasBackingFile = opts.isSet("backing_file")
        if opts["encrypt.format"]?.text == "luks" {
            throw CommandFailure("Measuring a LUKS-encrypted qcow2 image is not supported by qcowkit")
        }
        let clusterAlign = { (value: UInt64) -> UInt64 in alignUp(value, clusterSize) ?? .max }
        var virtualSize = clusterAlign(opts["size"]?.number ?? 0)
        guard Qcow2Measure.l1TableFits(virtualSize: virtualSize, clusterSize: clusterSize, extendedL2: extendedL2) else {
            throw CommandFailure("The image size is too large (try using a larger cluster size)")
        }
        var required: UInt64 = 0
        var bitmaps: UInt64?
        if let source {
            virtualSize = clusterAlign(source.size)
            if hasBackingFile {
                // How much of the new backing file the source shares is unknown.
                required = virtualSize
            } else {
                do {
                    required = try Qcow2Measure.dataBytes(of: source, clusterSize: clusterSize)
                } catch {
                    throw CommandFailure("Unable to get block status: \(error)")
                }
            }
            if version >= 3, let qcow2 = source as? Qcow2Image, qcow2.header.version >= 3 {
                var warnings: [ImageInfoWarning] = []
                let list = (try? BitmapDirectory.read(image: qcow2, warnings: &warnings)) ?? nil
                bitmaps = Qcow2Measure.bitmapsSize(list ?? [], virtualSize: qcow2.size, clusterSize: clusterSize)
            }
        }
        if preallocation == .full || preallocation == .falloc { required = virtualSize }
        let fullyAllocated = Qcow2Measure.fullyAllocatedSize(
            virtualSize: virtualSize, clusterSize: clusterSize, refcountWidth: width, extendedL2: extendedL2)
        return Sizes(required: fullyAllocated - virtualSize + required, fullyAllocated: fullyAllocated, bitmaps: bitmaps)
    }

    /// The human lines or the BlockMeasureInfo object, as qemu-img prints them.
    static func render(_ sizes: Sizes, json: Bool) -> String {
        guard json else {
            var text = "required size: \(sizes.required)\nfully allocated size: \(sizes.fullyAllocated)\n"
            if let bitmaps = sizes.bitmaps { text += "bitmaps size: \(bitmaps)\n" }
            return text
        }
        var members: [(String, JSONValue)] = [
            ("required", .int(Int64(bitPattern: sizes.required))),
            ("fully-allocated", .int(Int64(bitPattern: sizes.fullyAllocated))),
        ]
        if let bitmaps = sizes.bitmaps { members.append(("bitmaps", .int(Int64(bitPattern: bitmaps)))) }
        return JSONValue.object(members).qemuJSON(pretty: true) + "\n"
    }
}
