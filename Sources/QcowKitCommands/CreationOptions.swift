#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import QMP

// qemu-img's -o option lists (QEMU 7.2's QemuOpts): "key=value,key=value",
// a ",," inside a value standing for one comma, a bare "key" meaning key=on
// and "nokey" key=off. Values are checked by type as they are parsed, the
// last setting of a key wins, and `Formatting ...` prints every option that
// is set or has a default, in the format's declaration order.

/// One option a format accepts.
struct CreationOptionDescriptor: Sendable {
    enum Kind: Sendable { case string, bool, number, size }
    var name: String
    var kind: Kind
    var help: String
    var defaultValue: String?
    /// QEMU knows it, qcowkit does not implement it: refused if given.
    var isUnsupported = false

    var typeName: String {
        switch kind {
        case .string: return "str"
        case .bool: return "bool (on/off)"
        case .number: return "num"
        case .size: return "size"
        }
    }
}

/// A value as given and as parsed.
struct CreationOptionValue: Equatable, Sendable {
    var text: String
    var number: UInt64 = 0
    var flag = false
    /// A hex size with a suffix: QEMU warns each time it parses the text.
    var isHexWithSuffix = false
}

enum CreationOptionCatalog {
    typealias D = CreationOptionDescriptor
    static let size = D(name: "size", kind: .size, help: "Virtual disk size")
    static let nocow = D(name: "nocow", kind: .bool, help: "Turn off copy-on-write (valid only on btrfs)")
    static let extentSizeHint = D(
        name: "extent_size_hint", kind: .size, help: "Extent size hint for the image file, 0 to disable")

    /// qcow2's options followed by the file protocol's, in QEMU's order.
    static let qcow2: [D] = [
        D(name: "cluster_size", kind: .size, help: "qcow2 cluster size", defaultValue: "65536"),
        D(name: "extended_l2", kind: .bool, help: "Extended L2 tables", defaultValue: "off"),
        D(name: "preallocation", kind: .string, help: "Preallocation mode (allowed values: off, metadata, falloc, full)"),
        D(name: "compression_type", kind: .string, help: "Compression method used for image cluster compression",
          defaultValue: "zlib"),
        size,
        D(name: "compat", kind: .string, help: "Compatibility level (v2 [0.10] or v3 [1.1])"),
        D(name: "backing_file", kind: .string, help: "File name of a base image"),
        D(name: "backing_fmt", kind: .string, help: "Image format of the base image"),
        D(name: "data_file", kind: .string, help: "File name of an external data file", isUnsupported: true),
        D(name: "data_file_raw", kind: .bool, help: "The external data file must stay valid as a raw image",
          isUnsupported: true),
        D(name: "encryption", kind: .bool, help: "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)",
          isUnsupported: true),
        D(name: "encrypt.format", kind: .string, help: "Encrypt the image, format choices: 'aes', 'luks'", isUnsupported: true),
        D(name: "encrypt.key-secret", kind: .string, help: "ID of secret providing qcow AES key or LUKS passphrase",
          isUnsupported: true),
        D(name: "encrypt.cipher-alg", kind: .string, help: "Name of encryption cipher algorithm", isUnsupported: true),
        D(name: "encrypt.cipher-mode", kind: .string, help: "Name of encryption cipher mode", isUnsupported: true),
        D(name: "encrypt.ivgen-alg", kind: .string, help: "Name of IV generator algorithm", isUnsupported: true),
        D(name: "encrypt.ivgen-hash-alg", kind: .string, help: "Name of IV generator hash algorithm", isUnsupported: true),
        D(name: "encrypt.hash-alg", kind: .string, help: "Name of encryption hash algorithm", isUnsupported: true),
        D(name: "encrypt.iter-time", kind: .number, help: "Time to spend in PBKDF in milliseconds", isUnsupported: true),
        D(name: "lazy_refcounts", kind: .bool, help: "Postpone refcount updates", defaultValue: "off"),
        D(name: "refcount_bits", kind: .number, help: "Width of a reference count entry in bits", defaultValue: "16"),
        nocow,
        extentSizeHint,
    ]

    /// The raw format's one option, then the file protocol's.
    static let raw: [D] = [
        size,
        nocow,
        D(name: "preallocation", kind: .string, help: "Preallocation mode (allowed values: off, falloc, full)"),
        extentSizeHint,
    ]

    static func descriptors(format: String) -> [D]? {
        switch format {
        case "qcow2": return qcow2
        case "raw": return raw
        default: return nil
        }
    }
}

/// The options of one `create`, as QemuOpts holds them.
struct CreationOptionSet {
    let descriptors: [CreationOptionDescriptor]
    private(set) var values: [String: CreationOptionValue] = [:]

    init(descriptors: [CreationOptionDescriptor]) { self.descriptors = descriptors }

    func descriptor(_ name: String) -> CreationOptionDescriptor? { descriptors.first { $0.name == name } }
    func accepts(_ name: String) -> Bool { descriptor(name) != nil }

    subscript(name: String) -> CreationOptionValue? { values[name] }
    func isSet(_ name: String) -> Bool { values[name] != nil }

    /// Sets `name` from its text, checking the text against the type.
    mutating func set(_ name: String, _ text: String) throws {
        guard let d = descriptor(name) else { throw CommandFailure("Invalid parameter '\(name)'") }
        var value = CreationOptionValue(text: text)
        switch d.kind {
        case .string:
            break
        case .bool:
            switch text {
            case "on", "yes", "true", "y": value.flag = true
            case "off", "no", "false", "n": value.flag = false
            default: throw CommandFailure("Parameter '\(name)' expects 'on' or 'off'")
            }
        case .number:
            value.number = try Self.parseNumber(name, text)
        case .size:
            switch QemuSize.parse(text) {
            case let .success(size):
                value.isHexWithSuffix = size.isHexWithSuffix
                if size.isHexWithSuffix { Self.warnHexSuffix(text) }
                value.number = size.value
            case .failure(.outOfRange):
                throw CommandFailure("Value '\(text)' is out of range for parameter '\(name)'")
            case .failure(.invalid):
                throw CommandFailure(
                    "Parameter '\(name)' expects a non-negative number below 2^64\n"
                    + "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                    + "and exabytes, respectively.")
            }
        }
        values[name] = value
    }

    static func warnHexSuffix(_ text: String) {
        Terminal.printError(ProgramName.prefixed("warning: Using a multiplier suffix on hex numbers is deprecated: \(text)"))
    }

    /// QEMU parses some option texts a second time while creating the image,
    /// and warns again, for `names` in the order given.
    func warnAgainForHexSizes(_ names: [String]) {
        for name in names {
            if let value = values[name], value.isHexWithSuffix { Self.warnHexSuffix(value.text) }
        }
    }

    /// Sets a number as qemu-img sets the size it computed itself.
    mutating func setNumber(_ name: String, _ number: UInt64) {
        values[name] = CreationOptionValue(text: "\(Int64(bitPattern: number))", number: number)
    }

    /// qemu_strtou64 with base 0: decimal, 0x hex or 0 octal; a leading minus
    /// wraps around, as strtoull does.
    static func parseNumber(_ name: String, _ text: String) throws -> UInt64 {
        let chars = Array(text.utf8CString)
        var endPointer: UnsafeMutablePointer<CChar>?
        let (value, end, failed) = chars.withUnsafeBufferPointer { buffer -> (UInt64, Int, Bool) in
            guard let start = buffer.baseAddress else { return (0, 0, true) }
            errno = 0
            let v = strtoull(start, &endPointer, 0)
            let e = endPointer.map { UnsafePointer($0) - start } ?? 0
            return (v, e, errno == ERANGE)
        }
        if failed { throw CommandFailure("Value '\(text)' is too large for parameter '\(name)'") }
        guard end > 0, end == chars.count - 1 else { throw CommandFailure("Parameter '\(name)' expects a number") }
        return value
    }

    /// Whether `text` reads as a signed 64-bit integer (qemu_strtoi64, base 0).
    static func fitsInt64(_ text: String) -> Bool {
        let chars = Array(text.utf8CString)
        return chars.withUnsafeBufferPointer { buffer -> Bool in
            guard let start = buffer.baseAddress else { return false }
            var endPointer: UnsafeMutablePointer<CChar>?
            errno = 0
            _ = strtoll(start, &endPointer, 0)
            let end = endPointer.map { UnsafePointer($0) - start } ?? 0
            return errno != ERANGE && end > 0 && end == chars.count - 1
        }
    }

    /// Parses a -o list into this set (qemu_opts_do_parse).
    mutating func parse(_ list: String) throws {
        for (name, value) in Self.split(list) { try set(name, value) }
    }

    /// The " key=value" part of the `Formatting ...` line.
    func printed() -> String {
        var parts: [String] = []
        for d in descriptors {
            let value = values[d.name]
            guard let text = value?.text ?? d.defaultValue else { continue }
            switch d.kind {
            case .string:
                // Commas are doubled, so that the line could be given back to -o.
                parts.append("\(d.name)=" + text.split(separator: ",", omittingEmptySubsequences: false).joined(separator: ",,"))
            case .number, .size:
                if let value {
                    parts.append("\(d.name)=\(Int64(bitPattern: value.number))")
                } else {
                    parts.append("\(d.name)=\(text)")
                }
            case .bool:
                parts.append("\(d.name)=\(text)")
            }
        }
        return parts.joined(separator: " ")
    }

    // MARK: The list syntax

    /// Splits "a=1,b=x,,y,flag,noflag" into (name, value) pairs.
    static func split(_ list: String) -> [(String, String)] {
        var result: [(String, String)] = []
        let bytes = Array(list.utf8)
        var i = 0
        while i < bytes.count {
            // The name runs to the first '=' or ','.
            var j = i
            while j < bytes.count && bytes[j] != UInt8(ascii: "=") && bytes[j] != UInt8(ascii: ",") { j += 1 }
            let name = String(decoding: bytes[i..<j], as: UTF8.self)
            if j < bytes.count && bytes[j] == UInt8(ascii: "=") {
                let (value, next) = readValue(bytes, from: j + 1)
                result.append((name, value))
                i = next
            } else {
                // A flag: "name" is name=on, "noname" is name=off.
                if name.hasPrefix("no") {
                    result.append((String(name.dropFirst(2)), "off"))
                } else {
                    result.append((name, "on"))
                }
                i = j
            }
            if i < bytes.count && bytes[i] == UInt8(ascii: ",") { i += 1 }
        }
        return result
    }

    /// A value up to the first lone ',' (",," is a comma); returns it and the
    /// index of that ',' (or the end).
    private static func readValue(_ bytes: [UInt8], from start: Int) -> (String, Int) {
        var value: [UInt8] = []
        var i = start
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: ",") {
                if i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: ",") {
                    value.append(UInt8(ascii: ","))
                    i += 2
                    continue
                }
                break
            }
            value.append(bytes[i])
            i += 1
        }
        return (String(decoding: value, as: UTF8.self), i)
    }

    /// qemu-img's check of one -o argument: not empty, not starting with a
    /// comma, not ending in an odd number of commas.
    static func isValidList(_ list: String) -> Bool {
        guard let first = list.utf8.first, first != UInt8(ascii: ",") else { return false }
        let trailing = list.utf8.reversed().prefix { $0 == UInt8(ascii: ",") }.count
        return trailing % 2 == 0
    }

    /// True when an element of the list is exactly "help" or "?".
    static func wantsHelp(_ list: String) -> Bool {
        let bytes = Array(list.utf8)
        var i = 0
        while i < bytes.count {
            let (value, next) = readValue(bytes, from: i)
            if value == "help" || value == "?" { return true }
            i = next < bytes.count ? next + 1 : next
        }
        return false
    }

    // MARK: Help

    /// `-o help`: the format's options (and, given a file name, the file
    /// protocol's), as qemu-img lists them. Options qcowkit does not
    /// implement are left out.
    static func help(format: String, withFileName: Bool) -> String {
        let lines = helpLines
        let note = "\nThe protocol level may support further options.\nSpecify the target filename to include those options.\n"
        let protocolOptions = [CreationOptionCatalog.extentSizeHint, CreationOptionCatalog.nocow,
                               CreationOptionCatalog.raw[2], CreationOptionCatalog.size]
        switch format {
        case "qcow2":
            return withFileName
                ? "Supported options:\n" + lines(CreationOptionCatalog.qcow2)
                : "Supported qcow2 options:\n" + lines(CreationOptionCatalog.qcow2.filter { $0.name != "nocow" && $0.name != "extent_size_hint" }) + note
        default:
            return withFileName
                ? "Supported options:\n" + lines(protocolOptions)
                : "Supported raw options:\n" + lines([CreationOptionCatalog.size]) + note
        }
    }

    /// One line per option (qemu_opts_print_help): sorted by name, each
    /// name only once, options qcowkit does not implement left out.
    static func helpLines(_ list: [CreationOptionDescriptor]) -> String {
        var seen = Set<String>()
        return list.filter { !$0.isUnsupported && seen.insert($0.name).inserted }
            .sorted { $0.name < $1.name }
            .map { d -> String in
                var line = "  \(d.name)=<\(d.typeName)>"
                if line.utf8.count < 24 { line += String(repeating: " ", count: 24 - line.utf8.count) }
                return line + " - " + d.help
            }
            .joined(separator: "\n") + "\n"
    }
}
