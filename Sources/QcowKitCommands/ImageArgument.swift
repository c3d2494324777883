// A verb's image operand as qemu-img's img_open takes it: a file name (the
// format probed, or -f's), or QEMU's block options for one: with
// --image-opts the operand is QemuOpts text whose implied key is "file"
// ("driver=qcow2,file.filename=disk.qcow2,l2-cache-size=1M"), and a name
// starting with "json:" holds the same options as a JSON object. Both go
// through the block layer's one flat-options reader (FlatBlockOptions), so
// the errors are QEMU's; what the options say that QcowKit can act on is the
// file, the format, the backing file (none, or the header's), read-only and
// the locking, and the chain opener (ReadCommands.openChain) acts on it.
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
    /// Warnings QEMU prints while reading the options.
    var warnings: [String] = []

    /// A plain file name (or a json: one), with -f's format.
    init(_ text: String, format: String?) throws {
        try self.init(text, format: format, imageOpts: false)
    }

    init(_ text: String, format: String?, imageOpts: Bool) throws {
        self.text = text
        self.path = text
        self.format = format
        if imageOpts {
            if format != nil { throw CommandFailure("--image-opts and --format are mutually exclusive") }
            let opts = QemuOpts(text, impliedName: "file")
            try read(opts.entries.map { ($0.name, $0.value) })
        } else if text.hasPrefix("json:") {
            var pairs: [(String, FlatBlockOptions.Value)]
            do { pairs = try FlatBlockOptions.parseJSONFilename(text) } catch { throw failure(error) }
            if let format { pairs.append(("driver", format)) }  // -f overrides the object's driver
            try read(pairs)
        }
    }

    private func failure(_ error: Error) -> CommandFailure {
        CommandFailure("Could not open '\(text)': \(error)")
    }

    private mutating func read(_ given: [(String, FlatBlockOptions.Value)]) throws {
        var pairs = given
        let hasFile = pairs.contains { $0.0 == "file" || $0.0.hasPrefix("file.") }
        let driver = pairs.last { $0.0 == "driver" }?.1 ?? nil
        if !hasFile {
            // A filename and no driver: the protocol is found from the name.
            guard driver == nil, let index = pairs.lastIndex(where: { $0.0 == "filename" }) else {
                if driver == "file" { throw CommandFailure("Could not open '\(text)': the 'file' driver as an image's format is not supported by qcowkit") }
                throw failure(QMPServiceError("A block device must be specified for \"file\""))
            }
            pairs[index].0 = "file.filename"
        }
        let backing = pairs.last { $0.0 == "backing" }
        if let backing, backing.1 == "" {
            warnings.append("warning: Use of \"backing\": \"\" is deprecated; use \"backing\": null instead")
        }
        let options: BlockdevOptions
        do { options = try FlatBlockOptions.node(pairs) } catch { throw failure(error) }
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
                throw CommandFailure("Could not open '\(text)': backing.* options are not supported by qcowkit")
            }
        }
        if let value = backing?.1, value == "null" { backingNode = "null"; opensBacking = true }
    }

    /// The locking a verb asked for, as these options change it.
    func locking(_ requested: ImageLocking) -> ImageLocking {
        var locking = requested
        if forceShare { locking.forceShare = true }
        if let fileLocking { locking.mode = fileLocking }
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
