// `qcowkit info`: qemu-img info's output, line for line and key for key.
// With --backing-chain, every image of the chain: JSON as an array, human
// blocks separated by a blank line. Nothing is printed unless every image of
// the chain could be read, as qemu-img does.
import ImageInfoJSON
import Qcow2
import QemuJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

struct Info: ParsedVerb {
    var format: String?
    var output: String?
    var backingChain = false
    var locking = ImageLocking.standard
    var imageOpts = false
    var files: [String] = []

    /// qemu-img info's command line after the verb, read as img_info reads
    /// it (VerbGetopt). Throws ExitCode when it ends the run (help shown,
    /// a bad flag reported).
    static func parse(_ arguments: [String]) throws(ExitCode) -> Info {
        var info = Info()
        var options = VerbGetopt("info", arguments)
        while let (code, value) = try options.next() {
            switch code {
            case UInt8(ascii: "f"): info.format = value
            case QemuImgVerb.output.code: info.output = value
            case 0x90: info.backingChain = true
            case QemuImgVerb.forceShare.code: info.locking = .forceShared
            case QemuImgVerb.imageOpts.code: info.imageOpts = true
            default: break
            }
        }
        info.files = options.operands
        return info
    }

    /// What the command writes: standard output, and warnings for standard error.
    struct Rendered: Equatable {
        var text: String
        var warnings: String
    }

    func render() throws -> Rendered {
        guard files.count == 1, let file = files.first else {
            throw VerbGetopt.usageError("Expecting one image file name")
        }
        let json: Bool
        switch output ?? "human" {
        case "human": json = false
        case "json": json = true
        default: throw CommandFailure("--output must be used with human or json as argument.")
        }
        let argument = try ImageArgument(file, format: format, imageOpts: imageOpts)
        // qemu-img info opens the image alone (BDRV_O_NO_BACKING), and
        // walks the chain itself with --backing-chain.
        try argument.checkOpen(writable: false, attachingBacking: false)
        if argument.format != nil { _ = try ReadCommands.format(argument.format, path: argument.text) }
        let report: ImageInfoReport
        do {
            report = try ImageInfoReader.read(path: argument.path, format: argument.format,
                                              backingChain: backingChain && argument.opensBacking,
                                              locking: argument.locking(locking))
        } catch let error as Qcow2Error {
            // The operand as given names the image in QEMU's message.
            let opening = "Could not open '\(argument.path)'"
            var message = error.description
            if argument.text != argument.path, message.hasPrefix(opening) {
                message = "Could not open '\(argument.text)'" + message.dropFirst(opening.count)
            }
            throw CommandFailure(message)
        }
        if argument.format == nil, let probed = ImageFormat(rawValue: report.images[0].format) {
            try argument.checkProbed(probed)
        }
        let warnings = report.warnings.map { $0.message(program: ProgramName.current) }.joined()
        if json {
            let value: JSONValue = backingChain
                ? .array(report.images.map(\.qapiJSON))
                : report.images[0].qapiJSON
            return Rendered(text: value.qemuJSON(pretty: true) + "\n", warnings: warnings)
        }
        return Rendered(text: report.images.map(\.humanText).joined(separator: "\n"), warnings: warnings)
    }

    func run() throws {
        let rendered = try render()
        if !rendered.warnings.isEmpty { fputs(rendered.warnings, stderr) }
        Terminal.print(rendered.text, terminator: "")
    }
}
