// QEMU's JSON writer, byte for byte. Two styles:
// - compact (QMP's normal replies): `{"return": {}, "id": 1}`: ", " between
//   members, ": " after keys, no other spaces;
// - pretty (qemu-img --output=json, QMP's pretty mode): each member on its own
//   line indented by 4 spaces per level, "," at line ends, and the closing
//   bracket on its own line, so an empty object prints as "{" newline "}".
// Strings escape `"` `\` \b \f \n \r \t by name and every other character
// outside printable ASCII as \uXXXX (upper-case hex, surrogate pairs beyond the
// BMP); Unicode noncharacters print as \uFFFD, as QEMU cannot carry them.
// Doubles print as C's "%.17g".

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How object keys are ordered on output.
public enum JSONKeyOrder: Sendable {
    /// QEMU's QDict iteration order (what QEMU itself prints).
    case qdict
    /// The order the object was built in.
    case insertion
}

extension JSONValue {
    /// The value as QEMU prints it: `pretty` is qemu-img's --output=json
    /// style, otherwise QMP's single-line style. No trailing newline.
    public func qemuJSON(pretty: Bool = false, keyOrder: JSONKeyOrder = .qdict) -> String {
        var writer = QEMUJSONWriter(pretty: pretty, keyOrder: keyOrder)
        writer.write(self, name: nil)
        return writer.output
    }
}

/// Mirrors the structure of QEMU's writer: a comma is owed after any member
/// of the current container, and newlines are indented by container depth.
struct QEMUJSONWriter {
    let pretty: Bool
    let keyOrder: JSONKeyOrder
    var output = ""
    private var depth = 0
    private var needComma = false

    init(pretty: Bool, keyOrder: JSONKeyOrder) {
        self.pretty = pretty
        self.keyOrder = keyOrder
    }

    mutating func write(_ value: JSONValue, name: String?) {
        separate(name: name)
        switch value {
        case .null: output += "null"
        case let .bool(b): output += b ? "true" : "false"
        case let .int(i): output += String(i)
        case let .uint(u): output += String(u)
        case let .double(d): output += formatDouble(d)
        case let .string(s): appendQuoted(s)
        case let .array(items):
            output += "["
            enter()
            for item in items { write(item, name: nil) }
            leave()
            output += "]"
        case let .object(pairs):
            output += "{"
            enter()
            let members = keyOrder == .qdict ? QDictOrder.ordered(pairs) : pairs
            for (key, member) in members { write(member, name: key) }
            leave()
            output += "}"
        }
    }

    /// The comma and/or line break owed before a value, then its key.
    private mutating func separate(name: String?) {
        if needComma {
            output += ","
            if pretty { newline() } else { output += " " }
        } else {
            if !output.isEmpty && pretty { newline() }
            needComma = true
        }
        if let name {
            appendQuoted(name)
            output += ": "
        }
    }

    private mutating func enter() {
        depth += 1
        needComma = false
    }

    private mutating func leave() {
        depth -= 1
        needComma = true
        if pretty { newline() }
    }

    private mutating func newline() {
        output += "\n"
        output += String(repeating: " ", count: depth * 4)
    }

    private mutating func appendQuoted(_ s: String) {
        output += "\""
        for scalar in s.unicodeScalars {
            let cp = scalar.value
            switch cp {
            case 0x22: output += "\\\""
            case 0x5C: output += "\\\\"
            case 0x08: output += "\\b"
            case 0x0C: output += "\\f"
            case 0x0A: output += "\\n"
            case 0x0D: output += "\\r"
            case 0x09: output += "\\t"
            default:
                let printable = ModifiedUTF8.isValidCodepoint(Int(cp)) ? cp : 0xFFFD
                if printable > 0xFFFF {
                    appendEscape(0xD800 + ((printable - 0x10000) >> 10))
                    appendEscape(0xDC00 + ((printable - 0x10000) & 0x3FF))
                } else if printable < 0x20 || printable >= 0x7F {
                    appendEscape(printable)
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output += "\""
    }

    private mutating func appendEscape(_ unit: UInt32) {
        let hex = String(unit, radix: 16, uppercase: true)
        output += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}

/// C's "%.17g": what QEMU prints for a double (and "inf"/"nan" as C does).
public func formatDouble(_ value: Double) -> String {
    cFormat("%.17g", value)
}

/// One double through a printf format, in the C locale's number style.
func cFormat(_ format: String, _ value: Double) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    let count = withVaList([value]) { args in
        buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, args) }
    }
    if count >= buffer.count {
        buffer = [CChar](repeating: 0, count: Int(count) + 1)
        _ = withVaList([value]) { args in
            buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, args) }
        }
    }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
