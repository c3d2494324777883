// Builds one value from the tokens of one message, with QEMU's grammar and
// error messages. The first error found is the one reported (QEMU keeps the
// first and ignores the rest while unwinding). Nesting is handled with an
// explicit stack, so depth costs heap, not call stack.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

struct JSONTokenParser {
    private let tokens: [JSONToken]
    private var position = 0

    private enum Frame {
        case array([JSONValue])
        /// Members so far; the key whose value is being read, if any.
        case object([(String, JSONValue)], key: String?)
    }

    private struct Failure: Error {
        var message: String
    }

    static func parse(_ tokens: [JSONToken]) -> JSONParseOutcome {
        var parser = JSONTokenParser(tokens: tokens)
        do {
            return .value(try parser.parseMessage())
        } catch {
            return .error("JSON parse error, " + Self.clipped(error.message))
        }
    }

    /// QEMU formats a parse error's message into a 1024-byte buffer first
    /// (snprintf), so it keeps at most 1023 bytes of it: a 60 MB invalid
    /// keyword is answered with its first thousand letters, not echoed whole.
    static let messageLimit = 1023

    private static func clipped(_ message: String) -> String {
        let bytes = message.utf8
        guard bytes.count > messageLimit else { return message }
        return String(decoding: bytes.prefix(messageLimit), as: UTF8.self)
    }

    private init(tokens: [JSONToken]) {
        self.tokens = tokens
    }

    private var peek: JSONToken? { position < tokens.count ? tokens[position] : nil }

    private mutating func pop() -> JSONToken? {
        defer { position += 1 }
        return peek
    }

    private mutating func parseMessage() throws(Failure) -> JSONValue {
        var stack: [Frame] = []
        while true {
            // Read one value: a scalar, or the start of a container.
            guard let token = peek else { throw Failure(message: "premature EOI") }
            var value: JSONValue
            switch token.kind {
            case .leftCurly, .leftSquare:
                position += 1
                guard let next = peek else { throw Failure(message: "premature EOI") }
                let isObject = token.kind == .leftCurly
                if next.kind == (isObject ? .rightCurly : .rightSquare) {
                    position += 1
                    value = isObject ? .object([]) : .array([])
                } else {
                    stack.append(isObject ? .object([], key: nil) : .array([]))
                    continue
                }
            case .integer, .float:
                position += 1
                value = Self.number(token)
            case .string:
                position += 1
                value = .string(try Self.string(token))
            case .keyword:
                position += 1
                // Only the start of a long keyword can reach the message.
                switch String(decoding: token.text.prefix(Self.messageLimit), as: UTF8.self) {
                case "true": value = .bool(true)
                case "false": value = .bool(false)
                case "null": value = .null
                case let other: throw Failure(message: "invalid keyword '\(other)'")
                }
            default:
                throw Failure(message: "expecting value")
            }

            // Hand the value to the enclosing containers, closing those that end.
            while true {
                guard let frame = stack.popLast() else { return value }
                switch frame {
                case var .array(items):
                    items.append(value)
                    guard let separator = pop() else { throw Failure(message: "premature EOI") }
                    if separator.kind == .rightSquare {
                        value = .array(items)
                        continue
                    }
                    guard separator.kind == .comma else { throw Failure(message: "expected separator in list") }
                    stack.append(.array(items))
                case let .object(members, key: nil):
                    guard case let .string(key) = value else { throw Failure(message: "key is not a string in object") }
                    guard let colon = pop() else { throw Failure(message: "premature EOI") }
                    guard colon.kind == .colon else { throw Failure(message: "missing : in object pair") }
                    stack.append(.object(members, key: key))
                case .object(var members, key: let key?):
                    if members.contains(where: { $0.0 == key }) { throw Failure(message: "duplicate key") }
                    members.append((key, value))
                    guard let separator = pop() else { throw Failure(message: "premature EOI") }
                    if separator.kind == .rightCurly {
                        value = .object(members)
                        continue
                    }
                    guard separator.kind == .comma else { throw Failure(message: "expected separator in dict") }
                    // A key must follow: QEMU checks for a token before reading it.
                    guard peek != nil else { throw Failure(message: "premature EOI") }
                    stack.append(.object(members, key: nil))
                }
                break
            }
        }
    }

    /// Integers become int64 if they fit, else uint64 if non-negative and they
    /// fit, else a double; other numbers are doubles (strtod).
    private static func number(_ token: JSONToken) -> JSONValue {
        let text = String(decoding: token.text, as: UTF8.self)
        if token.kind == .integer {
            if let i = Int64(text) { return .int(i) }
            if token.text.first != UInt8(ascii: "-"), let u = UInt64(text) { return .uint(u) }
        }
        return .double(strtod(text, nil))
    }

    /// Decodes a string token (either quote style): escapes, surrogate
    /// pairs, and modified UTF-8 checked character by character.
    private static func string(_ token: JSONToken) throws(Failure) -> String {
        let bytes = token.text
        let quote = bytes[0]
        var out = String.UnicodeScalarView()
        var p = 1
        // The lexer guarantees the closing quote is the last byte.
        let end = bytes.count - 1
        func hex4(_ at: Int) -> Int {
            var cp = 0
            for i in at..<at + 4 {
                guard i < bytes.count, let digit = hexValue(bytes[i]) else { return -1 }
                cp = cp << 4 | digit
            }
            return cp
        }
        while p < end && bytes[p] != quote {
            if bytes[p] == UInt8(ascii: "\\") {
                let begin = p
                p += 1
                let escape = bytes[p]
                p += 1
                switch escape {
                case UInt8(ascii: "\""): out.append("\"")
                case UInt8(ascii: "'"): out.append("'")
                case UInt8(ascii: "\\"): out.append("\\")
                case UInt8(ascii: "/"): out.append("/")
                case UInt8(ascii: "b"): out.append("\u{08}")
                case UInt8(ascii: "f"): out.append("\u{0C}")
                case UInt8(ascii: "n"): out.append("\n")
                case UInt8(ascii: "r"): out.append("\r")
                case UInt8(ascii: "t"): out.append("\t")
                case UInt8(ascii: "u"):
                    var cp = hex4(p)
                    p += 4
                    if (0xD800...0xDBFF).contains(cp), p + 1 < bytes.count,
                       bytes[p] == UInt8(ascii: "\\"), bytes[p + 1] == UInt8(ascii: "u") {
                        cp = 0x10000 + ((cp & 0x3FF) << 10)
                        let trailing = hex4(p + 2)
                        if (0xDC00...0xDFFF).contains(trailing) {
                            cp |= trailing & 0x3FF
                            p += 6
                        } else {
                            cp = -1
                        }
                    }
                    guard ModifiedUTF8.isValidCodepoint(cp), let scalar = Unicode.Scalar(UInt32(cp)) else {
                        // QEMU quotes the escape as far as it read, up to the token's end.
                        let shown = bytes[begin..<min(p, bytes.count)]
                        throw Failure(message: "\(String(decoding: shown, as: UTF8.self)) is not a valid Unicode character")
                    }
                    out.append(scalar)
                    if p > end { return String(out) }
                default:
                    throw Failure(message: "invalid escape sequence in string")
                }
            } else {
                let (cp, next) = ModifiedUTF8.decode(bytes, at: p, end: end)
                guard cp >= 0, let scalar = Unicode.Scalar(UInt32(cp)) else {
                    throw Failure(message: "invalid UTF-8 sequence in string")
                }
                out.append(scalar)
                p = next
            }
        }
        return String(out)
    }

    private static func hexValue(_ c: UInt8) -> Int? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(c - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(c - UInt8(ascii: "A")) + 10
        default: return nil
        }
    }
}
