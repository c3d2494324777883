// `qcowkit dd`: qemu-img dd. Copies the input image's guest data (through its
// backing chain), from block `skip` for `count` blocks of `bs` bytes, into a
// new image of the output format (raw by default, or qcow2 with default
// options) sized to what is copied. Every block is written, zeroes included,
// as qemu-img writes them. qemu-img's quirk is kept: `count` limits the
// input's end (count * bs bytes from its start), not the amount after `skip`.
import Qcow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum DD {
    struct Operands {
        var blockSize: UInt64 = 512
        var count: UInt64?
        var skip: UInt64?
        var input: String?
        var output: String?
    }

    /// `argv` starts with the verb's name; returns the exit status.
    static func main(_ argv: [String]) -> Int32 {
        var format: String?
        var outputFormat = "raw"
        let words: [String]
        var locking = ImageLocking.standard
        var imageOpts = false
        let parsed = VerbGetopt.parse(argv) { code, value in
            switch code {
            case UInt8(ascii: "f"): format = value
            case UInt8(ascii: "O"): outputFormat = value
            case QemuImgVerb.imageOpts.code: imageOpts = true
            case QemuImgVerb.forceShare.code: locking = .forceShared
            default: break
            }
            return nil
        }
        switch parsed {
        case let .exit(status): return status
        case let .operands(operands): words = operands
        }
        var operands = Operands()
        for operand in words {
            guard let equals = operand.firstIndex(of: "=") else { return QemuImgFront.report("unrecognized operand \(operand)") }
            let key = String(operand[..<equals])
            let value = String(operand[operand.index(after: equals)...])
            do {
                switch key {
                case "bs": operands.blockSize = try NumberArgument.parse("bs", value, range: 1...UInt64(Int32.max))
                case "count": operands.count = try NumberArgument.parse("count", value)
                case "skip": operands.skip = try NumberArgument.parse("skip", value)
                case "if": operands.input = value
                case "of": operands.output = value
                default: return QemuImgFront.report("unrecognized operand \(key)")
                }
            } catch {
                return QemuImgFront.report("\(error)")
            }
        }
        guard let input = operands.input, let output = operands.output else {
            return QemuImgFront.report("Must specify both input and output files")
        }
        let source: BlockImage
        do { source = try ReadCommands.openChain(ImageArgument(input, format: format, imageOpts: imageOpts), locking: locking) } catch { return QemuImgFront.report("\(error)") }
        defer { try? source.close() }
        do {
            try copy(source, named: input, to: output, format: outputFormat, operands: operands)
            return 0
        } catch {
            return QemuImgFront.report("\(error)")
        }
    }

    private static func copy(_ source: BlockImage, named input: String, to output: String, format: String,
                             operands: Operands) throws {
        guard let outputFormat = ImageFormat(rawValue: format) else {
            if BackingImage.qemuDrivers.contains(format) {
                throw CommandFailure("Output format '\(format)' is not supported by qcowkit")
            }
            throw CommandFailure("Unknown file format")
        }
        let blockSize = operands.blockSize
        var size = source.size
        if let count = operands.count, count <= UInt64(Int64.max) / blockSize, count * blockSize < size {
            size = count * blockSize
        }
        // A skip past the end (or one that overflows) makes an empty image.
        var start: UInt64 = 0
        var skippedPastEnd = false
        if let skip = operands.skip {
            if skip > UInt64(Int64.max) / blockSize || size < skip * blockSize {
                skippedPastEnd = true
            } else {
                start = skip * blockSize
            }
        }
        let outputSize = skippedPastEnd ? 0 : size - start
        do {
            switch outputFormat {
            case .raw: try RawCreator.create(path: output, size: outputSize, replacing: true)
            case .qcow2: try Qcow2Creator.create(path: output, options: Qcow2CreateOptions(size: outputSize), replacing: true)
            }
        } catch {
            throw CommandFailure("\(output): error while creating output image: \(error)")
        }
        let target: WritableBlockImage
        do {
            guard let opened = try ImageOpener.open(path: output, format: outputFormat, writable: true) as? WritableBlockImage else {
                throw CommandFailure("Could not open '\(output)': not writable")
            }
            target = opened
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure(ImageOpener.failureMessage(path: output, error: error))
        }
        defer { try? target.close() }
        if skippedPastEnd {
            Terminal.printError(ProgramName.prefixed("\(input): cannot skip to specified offset"))
            return
        }
        var buffer = [UInt8](repeating: 0, count: Int(blockSize))
        var position = start
        var written: UInt64 = 0
        while position < size {
            let length = Int(min(blockSize, size - position))
            try buffer.withUnsafeMutableBytes { bytes in
                let chunk = UnsafeMutableRawBufferPointer(rebasing: bytes[0..<length])
                do { try source.read(into: chunk, at: position) } catch {
                    throw CommandFailure("error while reading from input image file: \(reason(error))")
                }
                do { try target.write(UnsafeRawBufferPointer(chunk), at: written) } catch {
                    throw CommandFailure("error while writing to output image file: \(reason(error))")
                }
            }
            position += UInt64(length)
            written += UInt64(length)
        }
        do { try target.flush() } catch {
            throw CommandFailure("error while writing to output image file: \(reason(error))")
        }
    }

    private static func reason(_ error: Error) -> String {
        String(cString: strerror(Qcow2Error.errnoValue(of: error)))
    }
}
