// QEMU's older option syntax (util/qemu-option.c), used by -drive, -chardev
// and -mon: a flat list of name=value, where ",," is a literal comma, a bare
// "name" means name=on and "noname" name=off, and with an implied name the
// first element may be a bare value. Keys stay flat ("backing.node-name" is
// one name); the last value for a name wins when it is looked up.
public struct QemuOpts: Equatable, Sendable {
    public private(set) var entries: [(name: String, value: String)] = []
    /// QEMU's deprecation warnings for the bare "name" / "noname" forms, in
    /// the order given (warn_report's text, without the program prefix).
    public private(set) var warnings: [String] = []

    public static func == (a: QemuOpts, b: QemuOpts) -> Bool {
        a.entries.map { [$0.name, $0.value] } == b.entries.map { [$0.name, $0.value] }
    }

    public init(_ params: String, impliedName: String? = nil) {
        let text = Array(params.utf8)
        var position = 0
        var implied = impliedName
        while position < text.count {
            var length = 0
            while position + length < text.count,
                  text[position + length] != UInt8(ascii: "="), text[position + length] != UInt8(ascii: ",") {
                length += 1
            }
            let name: String, value: String
            if position + length < text.count && text[position + length] == UInt8(ascii: "=") {
                name = String(decoding: text[position..<(position + length)], as: UTF8.self)
                (value, position) = Self.value(text, from: position + length + 1)
            } else if let impliedName = implied {
                name = impliedName
                (value, position) = Self.value(text, from: position)
            } else {
                let flag = String(decoding: text[position..<(position + length)], as: UTF8.self)
                if flag.hasPrefix("no") {
                    name = String(flag.dropFirst(2))
                    value = "off"
                } else {
                    name = flag
                    value = "on"
                }
                warnings.append("short-form boolean option '\(flag)' deprecated\nPlease use \(name)=\(value) instead")
                position += length
                if position < text.count { position += 1 }
            }
            implied = nil
            entries.append((name, value))
        }
    }

    /// A value up to the next single ',' (consumed), with ",," as ','.
    private static func value(_ text: [UInt8], from start: Int) -> (String, Int) {
        var bytes: [UInt8] = []
        var position = start
        while position < text.count {
            if text[position] == UInt8(ascii: ",") {
                position += 1
                if position >= text.count || text[position] != UInt8(ascii: ",") { break }
            }
            bytes.append(text[position])
            position += 1
        }
        return (String(decoding: bytes, as: UTF8.self), position)
    }

    /// The last value given for `name`.
    public subscript(name: String) -> String? {
        entries.last { $0.name == name }?.value
    }

    /// The names given, each once, in the order first given.
    public var names: [String] {
        var seen = Set<String>()
        return entries.compactMap { seen.insert($0.name).inserted ? $0.name : nil }
    }

    /// A boolean option as QemuOpts parses one (qapi_bool_parse's words).
    public func bool(_ name: String) throws -> Bool? {
        guard let text = self[name] else { return nil }
        switch text {
        case "on", "yes", "true", "y": return true
        case "off", "no", "false", "n": return false
        default: throw QMPServiceError("Parameter '\(name)' expects 'on' or 'off'")
        }
    }
}
