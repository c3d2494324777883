// `qcowkit convert`: copies the guest disk, through its backing chain, into a
// new image. For now the output is raw (qemu-img's default output format):
// a sparse file of exactly the virtual size.
import ArgumentParser
import Qcow2

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert the disk image FILENAME to disk image OUTPUT_FILENAME.")

    @Option(name: .customShort("f"), help: "The source image format (qcow2 or raw); probed when omitted.")
    var format: String?

    @Option(name: .customShort("O"), help: "The output format (raw).")
    var outputFormat: String = "raw"

    @Flag(name: [.customShort("U"), .customLong("force-share")], help: "Open the source without locking (always the case).")
    var forceShare = false

    @Flag(name: .customShort("q"), help: "Quiet: print nothing but errors.")
    var quiet = false

    @Argument(help: "The source image.")
    var source: String

    @Argument(help: "The output file.")
    var destination: String

    func run() throws {
        switch outputFormat {
        case "raw": break
        case "qcow2": throw CommandFailure("Output format 'qcow2' is not supported yet; use -O raw")
        default: throw CommandFailure("Unknown file format '\(outputFormat)'")
        }
        let image = try ReadCommands.openChain(source, format: format)
        defer { try? image.close() }
        do {
            try RawExport.write(image, to: destination)
        } catch let failure as RawExport.Failure {
            switch failure {
            case .create, .outputIsSource: throw CommandFailure("\(destination): error while converting raw: \(failure)")
            case .read, .write: throw CommandFailure("\(failure)")
            }
        }
    }
}
