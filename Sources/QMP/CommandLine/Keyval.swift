// QEMU's KEY=VALUE,... syntax of -blockdev (util/keyval.c), to the same JSON
// tree and with the same messages:
//   - keys are dotted paths of fragments; a fragment is a QAPI name or (not
//     first) a decimal index; a path names a leaf of nested objects;
//   - a value runs to the next single ',' (",," is a literal comma);
//   - the last of several values for one key wins;
//   - an object whose keys are all indexes becomes an array (no gaps);
//   - with an implied key, a first element without '=' is its value.
// Every leaf is a string; the QAPI reader converts it to the type it expects.
import QemuJSON

public struct KeyvalError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum Keyval {
    /// Fragments are at most this long (QEMU's 128-byte buffer).
    static let maxFragment = 127

    public static func parse(_ params: String, impliedKey: String? = nil) throws -> JSONValue {
        let root = Node.object([])
        let text = Array(params.utf8)
        var position = 0
        var implied = impliedKey
        while position < text.count {
            position = try parseOne(text, from: position, into: root, impliedKey: implied)
            implied = nil
        }
        return try listify(root, path: [])
    }

    /// A tree being built: objects keep their insertion order.
    final class Node {
        enum Kind { case string(String), object([(String, Node)]) }
        var kind: Kind
        init(_ kind: Kind) { self.kind = kind }
        static func object(_ members: [(String, Node)]) -> Node { Node(.object(members)) }

        func member(_ key: String) -> Node? {
            guard case let .object(members) = kind else { return nil }
            return members.first { $0.0 == key }?.1
        }

        func put(_ key: String, _ node: Node) {
            guard case var .object(members) = kind else { return }
            if let index = members.firstIndex(where: { $0.0 == key }) {
                members[index].1 = node
            } else {
                members.append((key, node))
            }
            kind = .object(members)
        }
    }

    private static func parseOne(_ text: [UInt8], from start: Int, into root: Node, impliedKey: String?) throws -> Int {
        let comma = UInt8(ascii: ","), equals = UInt8(ascii: "="), dot = UInt8(ascii: ".")
        var length = 0
        while start + length < text.count && text[start + length] != equals && text[start + length] != comma {
            length += 1
        }
        // The key: from the text, or the implied key with the text as value.
        let key: [UInt8]
        let usesImplied: Bool
        if let impliedKey, length > 0, start + length == text.count || text[start + length] != equals {
            key = Array(impliedKey.utf8)
            usesImplied = true
        } else {
            key = Array(text[start..<(start + length)])
            usesImplied = false
        }
        let keyText = String(decoding: key, as: UTF8.self)

        // Walk the fragments, creating objects for all but the last.
        var current = root
        var fragmentStart = 0
        var leafKey = ""
        while true {
            let fragmentLength: Int
            if fragmentStart != 0, let indexLength = indexPrefixLength(key, from: fragmentStart) {
                fragmentLength = indexLength
            } else {
                fragmentLength = qapiNameLength(key, from: fragmentStart)
            }
            let fragmentEnd = fragmentStart + fragmentLength
            if fragmentLength == 0 || (fragmentEnd < key.count && key[fragmentEnd] != dot) {
                throw KeyvalError("Invalid parameter '\(keyText)'")
            }
            let fragment = String(decoding: key[fragmentStart..<fragmentEnd], as: UTF8.self)
            if fragmentLength > maxFragment {
                let isWhole = fragmentStart == 0 && fragmentEnd == key.count
                throw KeyvalError("Parameter\(isWhole ? "" : " fragment") '\(fragment)' is too long")
            }
            if fragmentStart != 0 {
                current = try descend(current, leafKey, pathText: String(decoding: key[0..<(fragmentStart - 1)], as: UTF8.self))
            }
            leafKey = fragment
            if fragmentEnd < key.count {
                fragmentStart = fragmentEnd + 1
                continue
            }
            break
        }

        var position: Int
        var value: [UInt8] = []
        if usesImplied {
            value = Array(text[start..<(start + length)])
            position = start + length
            if position < text.count && text[position] == comma { position += 1 }
        } else {
            position = start + length
            guard position < text.count && text[position] == equals else {
                throw KeyvalError("Expected '=' after parameter '\(keyText)'")
            }
            position += 1
            while position < text.count {
                if text[position] == comma {
                    position += 1
                    if position >= text.count || text[position] != comma { break }
                }
                value.append(text[position])
                position += 1
            }
        }
        let leaf = String(decoding: value, as: UTF8.self)
        if let existing = current.member(leafKey), case .object = existing.kind {
            throw KeyvalError("Parameters '\(keyText).*' used inconsistently")
        }
        current.put(leafKey, Node(.string(leaf)))
        return position
    }

    /// The object at `key` in `parent`, created if absent.
    private static func descend(_ parent: Node, _ key: String, pathText: String) throws -> Node {
        if let existing = parent.member(key) {
            guard case .object = existing.kind else {
                throw KeyvalError("Parameters '\(pathText).*' used inconsistently")
            }
            return existing
        }
        let node = Node.object([])
        parent.put(key, node)
        return node
    }

    /// Turns objects whose keys are all indexes into arrays, recursively.
    private static func listify(_ node: Node, path: [String]) throws -> JSONValue {
        switch node.kind {
        case let .string(text):
            return .string(text)
        case let .object(members):
            var hasIndex = false, hasMember = false
            var converted: [String: JSONValue] = [:]
            for (key, child) in QDictOrder.ordered(members) {
                if indexValue(key) != nil { hasIndex = true } else { hasMember = true }
                converted[key] = try listify(child, path: path + [key])
            }
            let prefix = path.map { $0 + "." }.joined()
            if hasIndex && hasMember {
                throw KeyvalError("Parameters '\(prefix)*' used inconsistently")
            }
            guard hasIndex else {
                return .object(members.map { ($0.0, converted[$0.0] ?? .null) })
            }
            var elements: [Int: JSONValue] = [:]
            var maxIndex = -1
            for (key, _) in members {
                let index = indexValue(key) ?? Int(Int32.max)
                maxIndex = max(maxIndex, index)
                if index < members.count { elements[index] = converted[key] }
            }
            var list: [JSONValue] = []
            for index in 0...min(members.count, maxIndex) {
                guard let element = elements[index] else {
                    throw KeyvalError("Parameter '\(prefix)\(index)' missing")
                }
                list.append(element)
            }
            return .array(list)
        }
    }

    /// A fragment of only digits, as an index capped at INT_MAX.
    private static func indexValue(_ key: String) -> Int? {
        guard !key.isEmpty, key.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(key).map { min($0, Int(Int32.max)) } ?? Int(Int32.max)
    }

    /// Length of the leading decimal digits at `start` (nil if none).
    private static func indexPrefixLength(_ key: [UInt8], from start: Int) -> Int? {
        var end = start
        while end < key.count && key[end] >= 0x30 && key[end] <= 0x39 { end += 1 }
        return end > start ? end - start : nil
    }

    /// Length of the QAPI name at `start` (parse_qapi_name, not complete):
    /// an optional downstream "__RFQDN_" prefix, a letter, then letters,
    /// digits, '-' and '_'. 0 if there is none.
    static func qapiNameLength(_ key: [UInt8], from start: Int) -> Int {
        func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }
        func isAlnum(_ c: UInt8) -> Bool { isAlpha(c) || (c >= 0x30 && c <= 0x39) }
        var p = start
        if p < key.count && key[p] == UInt8(ascii: "_") {
            p += 1
            guard p < key.count && key[p] == UInt8(ascii: "_") else { return 0 }
            p += 1
            while p < key.count && (isAlnum(key[p]) || key[p] == UInt8(ascii: "-") || key[p] == UInt8(ascii: ".")) { p += 1 }
            guard p < key.count && key[p] == UInt8(ascii: "_") else { return 0 }
            p += 1
        }
        guard p < key.count && isAlpha(key[p]) else { return 0 }
        p += 1
        while p < key.count && (isAlnum(key[p]) || key[p] == UInt8(ascii: "-") || key[p] == UInt8(ascii: "_")) { p += 1 }
        return p - start
    }
}
