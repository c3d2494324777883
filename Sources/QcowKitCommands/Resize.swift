// `qcowkit resize`: qemu-img 7.2's img_resize. The size is taken off the end
// of the command line before options are parsed (so "-1G" is a size, not an
// option), read as a QemuOpts size ("+" grows by, "-" shrinks by), and the
// image is truncated with exact=true: qcow2 through the codec's truncate
// (grow with preallocation, or shrink), raw by setting the file's length.
import Qcow2
import QMP

enum Resize {
    /// `arguments` follow the verb: options, the image and the size.
    static func run(_ arguments: [String]) throws {
        var words = arguments
        guard words.count >= 2 else { throw VerbGetopt.usageError("Not enough arguments") }
        var sizeText = words.removeLast()

        var format: String?
        var quiet = false
        var shrink = false
        var preallocation = Preallocation.off
        var imageOpts = false
        var getopt = VerbGetopt("resize", words)
        while let (option, argument) = try getopt.next() {
            switch option {
            case UInt8(ascii: "f"): format = argument
            case UInt8(ascii: "q"): quiet = true
            case QemuImgVerb.imageOpts.code: imageOpts = true
            case 0x91: shrink = true  // --shrink
            case 0x90:  // --preallocation
                guard let mode = Preallocation(rawValue: argument) else {
                    throw CommandFailure("Invalid preallocation mode '\(argument)'")
                }
                preallocation = mode
            default: break
            }
        }
        let operands = getopt.operands
        guard operands.count == 1 else { throw VerbGetopt.usageError("Expecting image file name and size") }
        let filename = operands[0]

        var sign: Int64 = 0
        if sizeText.hasPrefix("+") {
            sign = 1
            sizeText.removeFirst()
        } else if sizeText.hasPrefix("-") {
            sign = -1
            sizeText.removeFirst()
        }
        let amount = try Self.parseSize(sizeText)

        let image = try ImageVerbs.openWritable(ImageArgument(filename, format: format, imageOpts: imageOpts))
        defer { try? image.close() }
        let current = image.size
        // int64 arithmetic on an unsigned size, as C does it.
        let total = sign == 0 ? Int64(bitPattern: amount)
            : Int64(bitPattern: current &+ (sign > 0 ? amount : 0 &- amount))
        guard total > 0 else { throw CommandFailure("New image size must be positive") }
        let newSize = UInt64(total)
        if newSize <= current && preallocation != .off {
            throw CommandFailure("Preallocation can only be used for growing images")
        }
        if newSize < current && !shrink {
            throw CommandFailure(
                "Use the --shrink option to perform a shrink operation.\n"
                + ProgramName.prefixed("warning: Shrinking an image will delete all data beyond the shrunken image's end. "
                + "Before performing such an operation, make sure there is no important data there."))
        }
        do {
            switch image {
            case let qcow2 as Qcow2Image: try qcow2.truncate(to: newSize, preallocation: preallocation)
            case let raw as RawImage: try raw.truncate(to: newSize, preallocation: preallocation)
            default: throw CommandFailure("Image format '\(image.format.rawValue)' cannot be resized")
            }
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure("\(error)")
        }
        if !quiet { Terminal.print("Image resized.") }
    }

    /// The size as QemuOpts reads a size option (qemu_strtosz, any 64-bit value).
    private static func parseSize(_ text: String) throws -> UInt64 {
        switch QemuSize.parse(text) {
        case let .success(size):
            if size.isHexWithSuffix {
                Terminal.printError(ProgramName.prefixed("warning: Using a multiplier suffix on hex numbers is deprecated: \(text)"))
            }
            return size.value
        case .failure(.outOfRange):
            throw CommandFailure("Value '\(text)' is out of range for parameter 'size'")
        case .failure(.invalid):
            throw CommandFailure(
                "Parameter 'size' expects a non-negative number below 2^64\n"
                + "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                + "and exabytes, respectively.")
        }
    }
}
