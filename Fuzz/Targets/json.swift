// Fuzz target `json`: QEMU's JSON dialect, as QMP reads it. The bytes go
// through the stream parser twice, whole and cut in two at a point the input
// chooses; both must give the same values and errors, since a stream parser
// must not care how its input arrives. Every value parsed is printed by the
// QEMU printer in both styles and must parse back to an equivalent value
// (numbers compare by value: 1.0 prints as "1"; objects compare as maps: the
// printer reorders keys as QEMU's QDict does). Values holding a non-finite
// double are not printed back: C's "inf" is not JSON, in QEMU either.

import FuzzSupport
import QemuJSON

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let cut = Int(input.byte())
    let bytes = input.rest()

    // Small limits as well as QEMU's, so that the limit paths are reached.
    for limits in [JSONMessageParser.Limits.qemu,
                   JSONMessageParser.Limits(maxTokenBytes: 64, maxTokenCount: 16, maxNesting: 4)] {
        var whole = JSONMessageParser(limits: limits)
        let outcomes = whole.feed(bytes) + whole.flush()

        var pieces = JSONMessageParser(limits: limits)
        let at = bytes.isEmpty ? 0 : cut % (bytes.count + 1)
        let inPieces = pieces.feed(bytes[..<at]) + pieces.feed(bytes[at...]) + pieces.flush()
        fuzzRequire(outcomes.count == inPieces.count && zip(outcomes, inPieces).allSatisfy(sameOutcome),
                    "outcomes depend on how the input is cut (at \(at)): \(outcomes) vs \(inPieces)")

        for case let .value(value) in outcomes where isFinite(value) {
            for pretty in [false, true] {
                let text = value.qemuJSON(pretty: pretty)
                switch JSONValue.parse(text) {
                case let .success(again):
                    fuzzRequire(equivalent(value, again), "print/parse changed \(value) into \(again) via \(text)")
                case let .failure(error):
                    fuzzRequire(false, "printed value does not parse (\(error)): \(text)")
                }
            }
        }
    }
    // The single-value entry point, on text.
    _ = JSONValue.parse(String(decoding: bytes, as: UTF8.self))
    return 0
}

private func sameOutcome(_ a: JSONParseOutcome, _ b: JSONParseOutcome) -> Bool {
    switch (a, b) {
    case let (.error(x), .error(y)): return x == y
    case let (.value(x), .value(y)): return equivalent(x, y) && equivalent(y, x)
    default: return false
    }
}

private func isFinite(_ value: JSONValue) -> Bool {
    switch value {
    case let .double(d): return d.isFinite
    case let .array(items): return items.allSatisfy(isFinite)
    case let .object(members): return members.allSatisfy { isFinite($0.1) }
    default: return true
    }
}

/// The number a scalar holds, for comparing across int, uint and double.
private func number(_ value: JSONValue) -> Double? {
    switch value {
    case let .int(i): return Double(i)
    case let .uint(u): return Double(u)
    case let .double(d): return d
    default: return nil
    }
}

/// Equal as JSON: numbers by value, objects as maps (keys are unique: the
/// parser refuses duplicates).
private func equivalent(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case let (.array(x), .array(y)):
        return x.count == y.count && zip(x, y).allSatisfy(equivalent)
    case let (.object(x), .object(y)):
        guard x.count == y.count else { return false }
        var byKey: [String: JSONValue] = [:]
        for (key, value) in y { byKey[key] = value }
        return x.allSatisfy { key, value in byKey[key].map { equivalent(value, $0) } ?? false }
    case (.int, .int), (.int, .uint), (.uint, .int), (.uint, .uint):
        return a == b
    default:
        if let m = number(a), let n = number(b) { return m == n }
        return a == b
    }
}
