// QEMU's plain-text rendering of a value, as in qemu-img info's "Format
// specific information:" block: one "key: value" line per member, keys with
// dashes shown as spaces, lists as "[0]:", nested containers indented by four
// spaces per level, members in QDict order.

extension JSONValue {
    /// The lines QEMU prints for this value at `indentation` levels.
    public func qemuHumanDump(indentation: Int = 1) -> String {
        var out = ""
        dump(self, indentation: indentation, into: &out)
        return out
    }
}

private func dump(_ value: JSONValue, indentation: Int, into out: inout String) {
    switch value {
    case let .object(pairs):
        for (key, member) in QDictOrder.ordered(pairs) {
            out += String(repeating: " ", count: indentation * 4)
            out += key.replacingDashes() + ":"
            out += member.isContainer ? "\n" : " "
            dump(member, indentation: indentation + 1, into: &out)
        }
    case let .array(items):
        for (i, item) in items.enumerated() {
            out += String(repeating: " ", count: indentation * 4)
            out += "[\(i)]:" + (item.isContainer ? "\n" : " ")
            dump(item, indentation: indentation + 1, into: &out)
        }
    case let .string(s): out += s + "\n"
    case let .int(i): out += "\(i)\n"
    case let .uint(u): out += "\(u)\n"
    case let .double(d): out += formatDouble(d) + "\n"
    case let .bool(b): out += (b ? "true" : "false") + "\n"
    // QEMU has no text form for null (it aborts); nothing it dumps holds one.
    case .null: out += "null\n"
    }
}

extension JSONValue {
    fileprivate var isContainer: Bool {
        switch self {
        case .object, .array: return true
        default: return false
        }
    }
}

extension String {
    fileprivate func replacingDashes() -> String {
        String(unicodeScalars.map { $0 == "-" ? " " : Character($0) })
    }
}
