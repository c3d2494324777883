// `qcowkit map`: the guest disk's layout through the backing chain, printed
// exactly as qemu-img 7.2 prints it: one entry per run of bytes with the same
// depth / present / zero / data / file, adjacent entries merged while their
// host offsets stay contiguous.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

struct Map: ParsedVerb {
    var format: String?
    var output: String?
    var locking = ImageLocking.standard
    var start: UInt64 = 0
    var maxLength: UInt64?
    var imageOpts = false
    var filenames: [String] = []

    /// qemu-img map's command line after the verb, read as img_map reads
    /// it (VerbGetopt; -s and -l are parsed as they come). Throws ExitCode
    /// when it ends the run (help shown, a bad flag reported) or
    /// CommandFailure.
    static func parse(_ arguments: [String]) throws -> Map {
        var map = Map()
        var options = VerbGetopt("map", arguments)
        while let (code, value) = try options.next() {
            switch code {
            case UInt8(ascii: "f"): map.format = value
            case QemuImgVerb.output.code: map.output = value
            case QemuImgVerb.forceShare.code: map.locking = .forceShared
            case UInt8(ascii: "s"): map.start = try MapPrinter.parseSize(value, what: "start offset")
            case UInt8(ascii: "l"): map.maxLength = try MapPrinter.parseSize(value, what: "max length")
            case QemuImgVerb.imageOpts.code: map.imageOpts = true
            default: break
            }
        }
        map.filenames = options.operands
        return map
    }

    func run() throws {
        guard filenames.count == 1, let filename = filenames.first else {
            throw VerbGetopt.usageError("Expecting one image file name")
        }
        guard let style = MapPrinter.Style(rawValue: output ?? "human") else {
            throw CommandFailure("--output must be used with human or json as argument.")
        }
        let image = try ReadCommands.openChain(ImageArgument(filename, format: format, imageOpts: imageOpts),
                                               locking: locking)
        defer { try? image.close() }
        try MapPrinter.print(image: image, style: style, start: start, maxLength: maxLength) { bytes in
            if let base = bytes.baseAddress { fwrite(base, 1, bytes.count, stdout) }
        }
    }
}

/// What the verbs that open an image chain (map, convert, snapshot) share.
enum ReadCommands {
    /// The format -f names (nil: probe), refused as qemu-img's open refuses it.
    static func format(_ name: String?, path: String) throws -> ImageFormat? {
        guard let name else { return nil }
        guard let known = ImageFormat(rawValue: name) else {
            throw CommandFailure("Could not open '\(path)': Unknown driver '\(name)'")
        }
        return known
    }

    /// Opens an image chain for a command, with qemu-img's messages on
    /// failure, locked for a user that needs `access` (VerbLocking.swift).
    /// A writable raw image whose format was probed gets qemu-img's warning
    /// (and refuses writes to its first sector, `RawImage.isProbed`);
    /// `attachingBacking` false opens it alone (BDRV_O_NO_BACKING).
    static func openChain(_ path: String, format name: String?, writable: Bool = false,
                          access: BlockAccess = VerbAccess.read, locking: ImageLocking = .standard,
                          attachingBacking: Bool = true) throws -> BlockImage {
        try openChain(ImageArgument(path, format: name), writable: writable, access: access, locking: locking,
                      attachingBacking: attachingBacking)
    }

    /// The same for an operand that may carry QEMU's block options
    /// (--image-opts, json:{...}): the file, format, backing, read-only and
    /// locking they give decide the open; messages name the operand as given.
    static func openChain(_ argument: ImageArgument, writable: Bool = false,
                          access: BlockAccess = VerbAccess.read, locking: ImageLocking = .standard,
                          attachingBacking: Bool = true) throws -> BlockImage {
        for warning in argument.warnings { Terminal.printError(ProgramName.prefixed(warning)) }
        let format = try self.format(argument.format, path: argument.text)
        try argument.checkOpen(writable: writable, attachingBacking: attachingBacking)
        let image: BlockImage
        do {
            image = try BackingChain.open(path: argument.path, format: format, writable: writable, at: .top,
                                          user: access, locking: argument.locking(locking),
                                          attachingBacking: attachingBacking && argument.opensBacking)
        } catch {
            throw CommandFailure(ImageOpener.failureMessage(path: argument.text, error: error))
        }
        if format == nil, writable, let raw = image as? RawImage {
            raw.isProbed = true
            Terminal.printError(ProbedRawWarning.text(path: argument.path))
        }
        if format == nil {
            do { try argument.checkProbed(image.format) } catch { try? image.close(); throw error }
        }
        return image
    }
}

/// qemu-img's map loop and its two printers (img_map, dump_map_entry).
enum MapPrinter {
    enum Style: String { case human, json }

    struct Entry: Equatable {
        var start: UInt64 = 0
        var length: UInt64 = 0
        var depth = 0
        var present = false
        var zero = false
        var data = false
        var offset: UInt64?
        var filename: String?

        init() {}

        init(start: UInt64, _ chain: ChainBlockStatus) {
            let status = chain.status
            self.start = start
            length = status.length
            depth = chain.depth
            present = status.isAllocated
            zero = status.isZero
            data = status.isData
            offset = status.hostOffset
            filename = status.hostOffset == nil ? nil : status.hostFile
        }

        /// Whether `next` continues this entry (qemu-img's entry_mergeable).
        func canMerge(_ next: Entry) -> Bool {
            guard length > 0, zero == next.zero, data == next.data, depth == next.depth,
                  present == next.present, filename == next.filename,
                  (offset == nil) == (next.offset == nil)
            else { return false }
            if let offset, let nextOffset = next.offset { return offset + length == nextOffset }
            return true
        }
    }

    /// Maps [start, min(start + maxLength, size)) and hands the output to
    /// `emit` in pieces of up to 64 KiB. Throws `CommandFailure` with
    /// qemu-img's message; what was emitted before stays emitted, as with
    /// qemu-img.
    static func print(image: BlockImage, style: Style, start: UInt64, maxLength: UInt64?,
                      emit: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        var out = TextBuffer(emit: emit)
        defer { out.flush() }
        let size = image.size
        var end = size
        if let maxLength { end = min(start.addingReportingOverflow(maxLength).overflow ? size : start + maxLength, size) }

        switch style {
        case .human: out.append(pad("Offset") + pad("Length") + pad("Mapped to") + "File\n")
        case .json: out.append("[")
        }
        var current = Entry()
        current.start = start
        while current.start + current.length < end {
            let offset = current.start + current.length
            let candidate: Entry
            do {
                candidate = Entry(start: offset, try image.chainBlockStatus(at: offset, length: end - offset))
            } catch {
                throw CommandFailure("Could not read file metadata: \(error)")
            }
            if current.canMerge(candidate) {
                current.length += candidate.length
                continue
            }
            var next: Entry? = candidate
            if current.length > 0 {
                try dump(current, next: &next, style: style, into: &out)
            }
            current = next ?? candidate
        }
        var none: Entry?
        try dump(current, next: &none, style: style, into: &out)
        if style == .json { out.append("]\n") }
    }

    /// Prints one entry (qemu-img's dump_map_entry). The human table does not
    /// tell zero from unallocated, so it relabels `next` to let those merge.
    private static func dump(_ entry: Entry, next: inout Entry?, style: Style, into out: inout TextBuffer) throws {
        switch style {
        case .human:
            if entry.data && entry.offset == nil {
                throw CommandFailure("File contains external, encrypted or compressed clusters.")
            }
            if entry.data && !entry.zero {
                out.append(pad(hex(entry.start)) + pad(hex(entry.length)) + pad(hex(entry.offset ?? 0)) + (entry.filename ?? "") + "\n")
            }
            if let n = next, !n.data || n.zero {
                next?.data = false
                next?.zero = true
            }
        case .json:
            out.append("{ \"start\": ")
            out.append(entry.start)
            out.append(", \"length\": ")
            out.append(entry.length)
            out.append(", \"depth\": ")
            out.append(UInt64(entry.depth))
            out.append(entry.present ? ", \"present\": true" : ", \"present\": false")
            out.append(entry.zero ? ", \"zero\": true" : ", \"zero\": false")
            out.append(entry.data ? ", \"data\": true" : ", \"data\": false")
            if let offset = entry.offset {
                out.append(", \"offset\": ")
                out.append(offset)
            }
            out.append(next == nil ? "}" : "},\n")
        }
    }

    /// printf's "%#" PRIx64: 0 stays "0", anything else gets "0x".
    private static func hex(_ value: UInt64) -> String {
        value == 0 ? "0" : "0x" + String(value, radix: 16)
    }

    /// printf's "%-16s".
    private static func pad(_ text: String) -> String {
        text.count >= 16 ? text : text + String(repeating: " ", count: 16 - text.count)
    }
}

/// Output collected as bytes and handed on in large pieces: map output can
/// run to millions of lines, so no per-line strings.
struct TextBuffer {
    private var bytes: [UInt8] = []
    private let emit: (UnsafeRawBufferPointer) -> Void
    private static let flushThreshold = 64 << 10

    init(emit: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.emit = emit
        bytes.reserveCapacity(Self.flushThreshold + 4096)
    }

    mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
        if bytes.count >= Self.flushThreshold { flush() }
    }

    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
        if bytes.count >= Self.flushThreshold { flush() }
    }

    /// A decimal number, digit by digit (printf's PRId64 for values we print).
    mutating func append(_ value: UInt64) {
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)   // 32 bytes of scratch
        withUnsafeMutableBytes(of: &digits) { scratch in
            var v = value
            var i = scratch.count
            repeat {
                i -= 1
                scratch[i] = UInt8(truncatingIfNeeded: v % 10) &+ 48
                v /= 10
            } while v > 0
            bytes.append(contentsOf: scratch[i...])
        }
    }

    mutating func flush() {
        guard !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { emit($0) }
        bytes.removeAll(keepingCapacity: true)
    }
}

extension MapPrinter {
    /// --start-offset and --max-length, read as qemu-img reads them (cvtnum).
    static func parseSize(_ text: String, what: String) throws -> UInt64 {
        try NumberArgument.parse(what, text)
    }
}
