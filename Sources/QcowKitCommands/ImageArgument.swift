// A verb's image operand as qemu-img's img_open takes it: a file name (the
// format probed, or -f's), or QEMU's block options for one: with
// --image-opts the operand is QemuOpts text whose implied key is "file"
// ("driver=qcow2,file.filename=disk.qcow2,l2-cache-size=1M"), and a name
// starting with "json:" holds the same options as a JSON object. Both go
// through the block layer's one flat-options reader (FlatBlockOptions), so
// the errors are QEMU's; what the options say that QcowKit can act on is the
// file, the format, the backing file (none, or the header's), read-only and
// the locking, and the chain opener (ReadCommands.openChain) acts on it.
// qemu-io's --image-opts and `open -o` come in here too (its QemuOpts have no
// implied key; its messages do not name the operand).
import BlockGraph
import Qcow2
import QMP

struct ImageArgument {
    /// The operand as given: QEMU names it so in "Could not open '...'".
    var text: String
    var path: String
    var format: String?
    /// false: `backing=null` (or "" in JSON): no backing file at all.
    var opensBacking = true
    /// A `backing=NAME` that would have to be an existing node.
    var backingNode: String?
    var readOnly = false
    var forceShare = false
    var fileLocking: FileLockingMode?
    /// discard= and cache.no-flush=, which only qemu-io acts on.
    var discard: String?
    var noFlush: Bool?
    /// cache.direct: O_DIRECT (nil: as the verb's cache mode says).
    var cacheDirect: Bool?
    /// Warnings QEMU prints while reading the options.
    var warnings: [String] = []
    /// Options a probed format decides (FlatBlockOptions.probedNode):
    /// checked by `checkProbed` once the image is open.
    var undecided: [(String, FlatBlockOptions.Value)] = []
    /// What errors start with: qemu-img names the operand, qemu-io does not.
    private var context: String

    /// A plain file name (or a json: one), with -f's format.
    init(_ text: String, format: String?) throws {
        try self.init(text, format: format, imageOpts: false)
    }

    init(_ text: String, format: String?, imageOpts: Bool) throws {
        self.text = text
        self.path = text
        self.format = format
        context = "Could not open '\(text)': "
        if imageOpts {
            if format != nil { throw CommandFailure("--image-opts and --format are mutually exclusive") }
            try read(Self.options([text], impliedName: "file", warn: Self.printWarning))
        } else if text.hasPrefix("json:") {
            var pairs: [(String, FlatBlockOptions.Value)]
            do { pairs = try FlatBlockOptions.parseJSONFilename(text) } catch { throw failure(error) }
            if let format { pairs.append(("driver", format)) }  // -f overrides the object's driver
            try read(pairs)
        }
    }

    /// qemu-io's image: the option strings of --image-opts' operand and
    /// `open -o` (QemuOpts without an implied key), beside them the file
    /// name `open` was given, and -f's format. Messages are the bare reasons
    /// (qemu-io prefixes "can't open").
    init(ioOptions optionStrings: [String], filename: String?, format: String?, warn: (String) -> Void) throws {
        text = filename ?? ""
        path = text
        self.format = format
        context = ""
        var pairs = Self.options(optionStrings, impliedName: nil, warn: warn)
        if let filename {
            // The name becomes the file child's, whose other options may come with it.
            if pairs.contains(where: { $0.0 == "file" }) {
                throw failure(QMPServiceError("Cannot reference an existing block device with additional options or a new filename"))
            }
            if pairs.contains(where: { $0.0 == "file.filename" }) {
                throw failure(QMPServiceError("Can't specify 'file' and 'filename' options at the same time"))
            }
            pairs.append(("file.filename", filename))
        }
        if let format { pairs.append(("driver", format)) }
        try read(pairs)
    }

    /// The pairs of QemuOpts option strings; their deprecation warnings go
    /// out as they are parsed, before any error in what they say.
    private static func options(_ strings: [String], impliedName: String?,
                                warn: (String) -> Void) -> [(String, FlatBlockOptions.Value)] {
        strings.flatMap { string in
            let opts = QemuOpts(string, impliedName: impliedName)
            opts.warnings.forEach(warn)
            return opts.entries.map { ($0.name, $0.value) }
        }
    }

    private static func printWarning(_ message: String) {
        Terminal.printError(ProgramName.prefixed("warning: " + message))
    }

    private func failure(_ error: Error) -> CommandFailure {
        CommandFailure(context + "\(error)")
    }

    private mutating func read(_ pairs: [(String, FlatBlockOptions.Value)]) throws {
        let hasFile = pairs.contains { $0.0 == "file" || $0.0.hasPrefix("file.") }
        let driver = pairs.last { $0.0 == "driver" }?.1 ?? nil
        if !hasFile {
            // A format node needs its file child (a bare `filename` is not one).
            if driver == "file" { throw failure(QMPServiceError("the 'file' driver as an image's format is not supported by qcowkit")) }
            throw failure(QMPServiceError(driver == nil ? "Must specify either driver or file"
                                                        : "A block device must be specified for \"file\""))
        }
        let backing = pairs.last { $0.0 == "backing" }
        if let backing, backing.1 == "" {
            warnings.append("warning: Use of \"backing\": \"\" is deprecated; use \"backing\": null instead")
        }
        let options: BlockdevOptions
        do { (options, undecided) = try FlatBlockOptions.probedNode(pairs) } catch { throw failure(error) }
        switch options.file {
        case let .node(name)?, let .filename(name)?:
            throw failure(QMPServiceError("Cannot find device='\(name)' nor node-name='\(name)'"))
        case let .options(file)?:
            guard let filename = file.filename else {
                throw failure(QMPServiceError("The 'file' block driver requires a file name"))
            }
            path = filename
            fileLocking = file.locking
        case nil:
            break
        }
        format = options.driver
        discard = pairs.last { $0.0 == "discard" }?.1 ?? nil
        noFlush = (pairs.last { $0.0 == "cache.no-flush" }?.1 ?? nil).map { ["on", "yes", "true", "y"].contains($0) }
        cacheDirect = (pairs.last { $0.0 == "cache.direct" }?.1 ?? nil).map { ["on", "yes", "true", "y"].contains($0) }
        readOnly = options.readOnly ?? false
        forceShare = options.forceShare ?? false
        switch options.backing {
        case .none:
            opensBacking = false
        case let .node(name):
            // "null" is a string here, not JSON's null: a node name.
            backingNode = name
        case let .fromImage(nested):
            if nested != nil {
                throw failure(QMPServiceError("backing.* options are not supported by qcowkit"))
            }
        }
        if let value = backing?.1, value == "null" { backingNode = "null"; opensBacking = true }
    }

    /// The undecided options checked against the format the open probed.
    func checkProbed(_ format: ImageFormat) throws {
        do { try FlatBlockOptions.checkProbed(undecided, driver: format.rawValue) } catch { throw failure(error) }
    }

    /// The locking a verb asked for, as these options change it.
    func locking(_ requested: ImageLocking) -> ImageLocking {
        var locking = requested
        if forceShare { locking.forceShare = true }
        if let fileLocking { locking.mode = fileLocking }
        if let cacheDirect { locking.direct = cacheDirect }
        if let noFlush { locking.noFlush = noFlush }
        return locking
    }

    /// Refusals that depend on how the verb opens the image (writable, with
    /// or without its backing file), in QEMU's words.
    func checkOpen(writable: Bool, attachingBacking: Bool) throws {
        if writable && forceShare {
            throw failure(QMPServiceError("force-share=on can only be used with read-only images"))
        }
        if writable && readOnly { throw failure(QMPServiceError("Block node is read-only")) }
        if let backingNode {
            guard attachingBacking else {
                throw failure(QMPServiceError("Block format '\(format ?? "qcow2")' does not support the option 'backing'"))
            }
            throw failure(QMPServiceError("Could not open backing file: Cannot find device='\(backingNode)' nor node-name='\(backingNode)'"))
        }
    }
}
