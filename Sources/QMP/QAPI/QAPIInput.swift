// Reads a command's arguments the way QEMU's QObject input visitor does, so
// a client sees QAPI's errors: members are taken in the schema's order (the
// first missing or mistyped one is reported), then any member nobody took is
// "unexpected" (the first in QDict order, as QEMU walks the dictionary).
//
// Two modes: QMP's typed JSON, and keyval (-blockdev's key=value form),
// where every scalar is a string converted to the type the schema expects.
import QemuJSON

struct QAPIInput {
    enum Mode { case json, keyval }

    let mode: Mode
    /// Prefix of member names in messages: "file." inside `file`.
    let prefix: String
    private let members: [(String, JSONValue)]
    private var taken: Set<String> = []

    init(_ members: [(String, JSONValue)], mode: Mode = .json, prefix: String = "") {
        self.members = members
        self.mode = mode
        self.prefix = prefix
    }

    /// Arguments of a command: an absent `arguments` member is an empty object.
    init(arguments: JSONValue?) {
        self.init(arguments?.objectValue ?? [])
    }

    func fullName(_ name: String) -> String { prefix + name }

    /// The member's value (the last one if repeated, as a QDict keeps),
    /// marked as taken.
    mutating func take(_ name: String) -> JSONValue? {
        guard let index = members.lastIndex(where: { $0.0 == name }) else { return nil }
        taken.insert(name)
        return members[index].1
    }

    func has(_ name: String) -> Bool { members.contains { $0.0 == name } }

    /// Reports the first member nobody took.
    func finish() throws {
        let unique = QDictOrder.ordered(members)
        if let (name, _) = unique.first(where: { !taken.contains($0.0) }) {
            throw QMPError.generic("Parameter '\(fullName(name))' is unexpected")
        }
    }

    // MARK: Errors

    func missing(_ name: String) -> QMPError {
        .generic("Parameter '\(fullName(name))' is missing")
    }

    func wrongType(_ name: String, expected: String) -> QMPError {
        .generic("Invalid parameter type for '\(fullName(name))', expected: \(expected)")
    }

    func invalidValue(_ name: String, expects: String) -> QMPError {
        .generic("Parameter '\(fullName(name))' expects \(expects)")
    }

    // MARK: Scalars

    mutating func optionalString(_ name: String) throws -> String? {
        guard let value = take(name) else { return nil }
        guard case let .string(text) = value else { throw wrongType(name, expected: "string") }
        return text
    }

    mutating func string(_ name: String) throws -> String {
        guard let text = try optionalString(name) else { throw missing(name) }
        return text
    }

    mutating func optionalBool(_ name: String) throws -> Bool? {
        guard let value = take(name) else { return nil }
        switch (mode, value) {
        case let (_, .bool(flag)): return flag
        case let (.keyval, .string(text)):
            // qapi_bool_parse's spellings.
            switch text {
            case "on", "yes", "true", "y": return true
            case "off", "no", "false", "n": return false
            default: throw invalidValue(name, expects: "'on' or 'off'")
            }
        case (.keyval, _): throw wrongType(name, expected: "string")
        default: throw wrongType(name, expected: "boolean")
        }
    }

    mutating func optionalInt64(_ name: String) throws -> Int64? {
        guard let value = take(name) else { return nil }
        switch (mode, value) {
        case (.json, _):
            guard let number = value.int64Value else { throw wrongType(name, expected: "integer") }
            return number
        case let (.keyval, .string(text)):
            guard let number = parseCInteger(text) else { throw invalidValue(name, expects: "integer") }
            return number
        case (.keyval, _): throw wrongType(name, expected: "string")
        }
    }

    mutating func int64(_ name: String) throws -> Int64 {
        guard let number = try optionalInt64(name) else { throw missing(name) }
        return number
    }

    /// A QAPI enum member: a string among `values`.
    mutating func optionalEnum(_ name: String, _ values: [String]) throws -> String? {
        guard let text = try optionalString(name) else { return nil }
        guard values.contains(text) else {
            // QAPI's enum visitor names the member alone, not its path.
            throw QMPError.generic("Parameter '\(name)' does not accept value '\(text)'")
        }
        return text
    }

    /// A nested struct member, to be read with its own input (and finished).
    mutating func optionalObject(_ name: String, typeName: String) throws -> QAPIInput? {
        guard let value = take(name) else { return nil }
        guard case let .object(pairs) = value else { throw wrongType(name, expected: typeName) }
        return QAPIInput(pairs, mode: mode, prefix: fullName(name) + ".")
    }
}

/// qemu_strtoi64 with base 0: decimal, 0x hex or 0 octal, optional sign,
/// nothing after the digits.
func parseCInteger(_ text: String) -> Int64? {
    var digits = Substring(text)
    var negative = false
    if let sign = digits.first, sign == "-" || sign == "+" {
        negative = sign == "-"
        digits = digits.dropFirst()
    }
    var radix = 10
    if digits.hasPrefix("0x") || digits.hasPrefix("0X") {
        radix = 16
        digits = digits.dropFirst(2)
    } else if digits.count > 1 && digits.hasPrefix("0") {
        radix = 8
        digits = digits.dropFirst()
    }
    guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isHexDigit }),
          let magnitude = UInt64(digits, radix: radix) else { return nil }
    if negative {
        guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
        return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
    }
    guard magnitude <= UInt64(Int64.max) else { return nil }
    return Int64(magnitude)
}
