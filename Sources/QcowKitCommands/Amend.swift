// `qcowkit amend`: qemu-img 7.2's img_amend (a native verb of the front,
// parsed by VerbGetopt with amend's row). The -o lists are joined and
// parsed against qcow2's amend options (QemuOpts, as create's are); an
// option only `create` knows is refused with qemu-img's hint. The options
// set are then checked in the order QEMU declares them, and the codec's
// amend (Sources/Qcow2/Write/Amend.swift) does the rest, reporting progress
// for -p as qemu-img's amend_status_cb draws it.
import Qcow2

enum Amend {
    /// `arguments` follow the verb: options and the image.
    static func run(_ arguments: [String]) throws {
        var options: String?
        var format: String?
        var cache = "writeback"
        var showProgress = false
        var quiet = false
        var imageOpts = false
        var getopt = VerbGetopt("amend", arguments)
        while let (option, argument) = try getopt.next() {
            switch option {
            case UInt8(ascii: "o"):
                guard CreationOptionSet.isValidList(argument) else { throw CommandFailure("Invalid option list: \(argument)") }
                options = options.map { $0 + "," + argument } ?? argument
            case UInt8(ascii: "f"): format = argument
            case UInt8(ascii: "t"): cache = argument
            case UInt8(ascii: "p"): showProgress = true
            case UInt8(ascii: "q"): quiet = true
            case QemuImgVerb.imageOpts.code: imageOpts = true
            default: break  // --force: only encryption changes use it
            }
        }
        guard let options else { throw VerbGetopt.usageError("Must specify options (-o)") }
        let progress = QemuProgress(enabled: showProgress && !quiet, minSkip: 1)
        defer { progress.end() }

        let operands = getopt.operands
        if let format, CreationOptionSet.wantsHelp(options) {
            return try Self.printHelp(format: format)
        }
        guard operands.count == 1 else { throw CommandFailure("Expecting one image file name") }
        let cacheMode = try CacheModeArgument.check(cache)

        let image = try ImageVerbs.openWritable(ImageArgument(operands[0], format: format, imageOpts: imageOpts),
                                                cache: cacheMode)
        defer { try? image.close() }
        let formatName = image.format.rawValue
        if CreationOptionSet.wantsHelp(options) { return try Self.printHelp(format: formatName) }
        guard let qcow2 = image as? Qcow2Image else {
            throw CommandFailure("Format driver '\(formatName)' does not support option amendment")
        }

        let request = try Self.request(from: try Self.parse(options))
        progress.print(0)
        let outcome = Result {
            try qcow2.amend(request) { done, total in
                progress.print(total == 0 ? 0 : 100 * Float(done) / Float(total))
            }
        }
        progress.print(100)
        switch outcome {
        case .success:
            break
        case .failure(Qcow2AmendError.backingFileChange):
            throw CommandFailure("Cannot amend the backing file\nYou can use '\(ProgramName.current) rebase' instead.")
        case let .failure(error):
            throw CommandFailure("\(error)")
        }
    }

    /// print_amend_option_help.
    private static func printHelp(format: String) throws {
        switch format {
        case "qcow2":
            Terminal.print("Amend options for 'qcow2':\n" + CreationOptionSet.helpLines(AmendOptionCatalog.qcow2),
                           terminator: "")
        case "luks":
            Terminal.print("Amend options for 'luks':\n" + CreationOptionSet.helpLines(AmendOptionCatalog.luks),
                           terminator: "")
        default:
            guard Rebase.qemuFormats.contains(format) else { throw CommandFailure("Unknown file format '\(format)'") }
            throw CommandFailure("Format driver '\(format)' does not support option amendment")
        }
    }

    /// qemu_opts_do_parse against the amend options; a list that parses
    /// with create's options too gets qemu-img's hint.
    private static func parse(_ list: String) throws -> CreationOptionSet {
        var opts = CreationOptionSet(descriptors: AmendOptionCatalog.qcow2)
        do {
            try opts.parse(list)
        } catch let failure as CommandFailure {
            var either = CreationOptionSet(descriptors: AmendOptionCatalog.qcow2 + AmendOptionCatalog.qcow2CreateOnly)
            if (try? either.parse(list)) != nil {
                throw CommandFailure(failure.message + "\nThis option is only supported for image creation")
            }
            throw failure
        }
        return opts
    }

    /// The options set, checked in QEMU's declaration order (the first bad
    /// one is reported), as a request for the codec.
    private static func request(from opts: CreationOptionSet) throws -> Qcow2AmendRequest {
        var request = Qcow2AmendRequest()
        for descriptor in AmendOptionCatalog.qcow2 {
            guard let value = opts[descriptor.name] else { continue }
            switch descriptor.name {
            case "size":
                request.size = value.number
            case "compat":
                switch value.text {
                case "0.10", "v2": request.version = 2
                case "1.1", "v3": request.version = 3
                default: throw CommandFailure("Unknown compatibility level \(value.text)")
                }
            case "backing_file":
                request.backingFile = value.text
                request.backingGiven = true
            case "backing_fmt":
                request.backingFormat = value.text
                request.backingGiven = true
            case "data_file":
                // Images with an external data file are not opened here.
                throw CommandFailure("data-file can only be set for images that use an external data file")
            case "data_file_raw":
                if value.flag { throw CommandFailure("data-file-raw cannot be set on existing images") }
            case "lazy_refcounts":
                request.lazyRefcounts = value.flag
            case "refcount_bits":
                // QEMU keeps the number in an int.
                let bits = Int32(truncatingIfNeeded: value.number)
                guard bits > 0, let width = RefcountWidth(bits: UInt64(bits)) else {
                    throw CommandFailure("Refcount width must be a power of two and may not exceed 64 bits")
                }
                request.refcountWidth = width
            default:
                // encrypt.*: encrypted images are not opened here.
                throw CommandFailure("Can't amend encryption options - encryption not present")
            }
        }
        return request
    }
}

/// The amend options of QEMU 7.2's drivers, in declaration order (the order
/// they are checked in); help lists them sorted.
enum AmendOptionCatalog {
    typealias D = CreationOptionDescriptor

    private static func luksOptions(prefix: String) -> [D] {
        [
            D(name: prefix + "state", kind: .string, help: "Select new state of affected keyslots (active/inactive)"),
            D(name: prefix + "keyslot", kind: .number, help: "Select a single keyslot to modify explicitly"),
            D(name: prefix + "old-secret", kind: .string, help: "Select all keyslots that match this password"),
            D(name: prefix + "new-secret", kind: .string,
              help: "New secret to set in the matching keyslots. Empty string to erase"),
            D(name: prefix + "iter-time", kind: .number, help: "Time to spend in PBKDF in milliseconds"),
        ]
    }

    static let luks = luksOptions(prefix: "")

    private static func createOption(_ name: String) -> D {
        var d = CreationOptionCatalog.qcow2.first { $0.name == name }!
        d.isUnsupported = false
        return d
    }

    static let qcow2: [D] = luksOptions(prefix: "encrypt.") + [
        "size", "compat", "backing_file", "backing_fmt", "data_file", "data_file_raw", "lazy_refcounts", "refcount_bits",
    ].map(createOption)

    /// qcow2's creation options that amend does not take.
    static let qcow2CreateOnly: [D] = CreationOptionCatalog.qcow2.filter { d in
        d.name != "nocow" && d.name != "extent_size_hint" && !qcow2.contains { $0.name == d.name }
    }
}
