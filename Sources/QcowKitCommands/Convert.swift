// `qcowkit convert`: copies the guest disk, through its backing chain, into a
// new image: raw (qemu-img's default output format, a sparse file of exactly
// the virtual size) or qcow2 (created with -o options, only data written).
import ArgumentParser
import Qcow2

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert the disk image FILENAME to disk image OUTPUT_FILENAME.")

    @Option(name: .customShort("f"), help: "The source image format (qcow2 or raw); probed when omitted.")
    var format: String?

    @Option(name: .customShort("O"), help: "The output format: raw (default) or qcow2.")
    var outputFormat: String = "raw"

    @Option(name: .customShort("o"), help: "Output format options, as for create: key=value,... (repeatable).")
    var options: [String] = []

    @Flag(name: .customShort("c"), help: "Compress the output (qcow2 only): every data cluster is written compressed.")
    var compress = false

    @OptionGroup var sharing: ForceShareOption

    @Flag(name: .customShort("q"), help: "Quiet: print nothing but errors.")
    var quiet = false

    @Argument(help: "The source image.")
    var source: String

    @Argument(help: "The output file.")
    var destination: String

    func run() throws {
        switch outputFormat {
        case "raw":
            if compress { throw CommandFailure("Compression not supported for this file format") }
            if !options.isEmpty { throw CommandFailure("Invalid option list: \(options.joined(separator: ","))") }
        case "qcow2": break
        default: throw CommandFailure("Unknown file format '\(outputFormat)'")
        }
        // Options are checked before the source is opened, as qemu-img does.
        let qcow2Options = outputFormat == "qcow2" ? try outputQcow2Options() : nil
        let image = try ReadCommands.openChain(source, format: format, access: VerbAccess.convertSource,
                                               locking: sharing.locking)
        defer { try? image.close() }
        do {
            if let qcow2Options {
                try Qcow2Export.write(image, to: destination, options: qcow2Options.options,
                                      refcountBits: qcow2Options.unfitRefcountBits, compress: compress)
            } else {
                try RawExport.write(image, to: destination)
            }
        } catch let Qcow2Error.export(failure) {
            switch failure {
            case .create, .outputIsSource:
                throw CommandFailure("\(destination): error while converting \(outputFormat): \(failure)")
            case .read, .write: throw CommandFailure("\(failure)")
            }
        } catch let Qcow2Error.creation(error) {
            throw CommandFailure("\(destination): error while converting qcow2: \(error)")
        } catch let error as Qcow2Error {
            guard case .lockConflict = error else { throw error }
            throw CommandFailure("\(destination): error while converting \(outputFormat): \(error)")
        }
    }

    /// The -o list read as `create` reads it, for a qcow2 output. A backing
    /// file is refused: the output is a flattened copy of the whole chain.
    private func outputQcow2Options() throws -> (options: Qcow2CreateOptions, unfitRefcountBits: UInt64?) {
        guard let descriptors = CreationOptionCatalog.descriptors(format: "qcow2") else {
            throw CommandFailure("Unknown file format 'qcow2'")
        }
        var opts = CreationOptionSet(descriptors: descriptors)
        for list in options {
            guard CreationOptionSet.isValidList(list) else { throw CommandFailure("Invalid option list: \(list)") }
            try opts.parse(list)
        }
        for d in descriptors where d.isUnsupported && opts.isSet(d.name) {
            throw CommandFailure("Option '\(d.name)' is not supported by qcowkit")
        }
        if opts.isSet("backing_file") || opts.isSet("backing_fmt") {
            throw CommandFailure("convert writes a flattened image: backing_file is not supported here")
        }
        if opts.isSet("size") { throw CommandFailure("Invalid parameter 'size'") }
        return try Create.qcow2Options(opts, size: 0)
    }
}
