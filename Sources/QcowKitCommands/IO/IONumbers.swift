// The numbers qemu-io's commands take: sizes and offsets with binary
// suffixes (qemu's strtosz as qemu-io 7.2 calls it: decimal, optional
// fraction, hex without fraction, a suffix from B K M G T P E, default bytes),
// pattern bytes (strtol, any base), and their error messages, which go to
// standard output.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum IONumbers {
    enum ParseError: Error, Equatable {
        case invalid
        case tooLarge
    }

    /// A size or offset (qemu-io's cvtnum): at most INT64_MAX. `warn` gets
    /// the deprecation warning for a suffix on a hex number.
    static func size(_ text: String, warn: (String) -> Void = { _ in }) -> Result<Int64, ParseError> {
        let value: UInt64
        switch strtosz(text, warn: warn) {
        case let .success(v): value = v
        case let .failure(e): return .failure(e)
        }
        guard value <= UInt64(Int64.max) else { return .failure(.tooLarge) }
        return .success(Int64(value))
    }

    /// qemu-io's message for a size it could not parse.
    static func message(for error: ParseError, in text: String) -> String {
        switch error {
        case .invalid: return "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- \(text)"
        case .tooLarge: return "Parsing error: argument too large -- \(text)"
        }
    }

    /// The byte a suffix multiplies by (B=1, K=2^10 ... E=2^60), if it is one.
    private static func suffixMultiplier(_ c: UInt8) -> UInt64? {
        switch c | 0x20 {   // ASCII lower case
        case UInt8(ascii: "b"): return 1
        case UInt8(ascii: "k"): return 1 << 10
        case UInt8(ascii: "m"): return 1 << 20
        case UInt8(ascii: "g"): return 1 << 30
        case UInt8(ascii: "t"): return 1 << 40
        case UInt8(ascii: "p"): return 1 << 50
        case UInt8(ascii: "e"): return 1 << 60
        default: return nil
        }
    }

    /// The whole of `text` as a byte count. The integral part goes through
    /// strtoull (so leading blanks and '+' pass, as in QEMU); a fraction is
    /// kept as 64-bit fixed point and the product rounded half up.
    static func strtosz(_ text: String, warn: (String) -> Void = { _ in }) -> Result<UInt64, ParseError> {
        var bytes = Array(text.utf8)
        // A NUL inside the argument ends the C string QEMU sees.
        if let nul = bytes.firstIndex(of: 0) { bytes.removeSubrange(nul...) }
        bytes.append(0)
        return bytes.withUnsafeBufferPointer { buffer -> Result<UInt64, ParseError> in
            guard let start = buffer.baseAddress else { return .failure(.invalid) }
            let base = UnsafeRawPointer(start).assumingMemoryBound(to: CChar.self)
            func at(_ i: Int) -> UInt8 { buffer[i] }
            func parseUnsigned(_ radix: Int32) -> (value: UInt64, end: Int, error: ParseError?) {
                var endPointer: UnsafeMutablePointer<CChar>?
                errno = 0
                let v = strtoull(base, &endPointer, radix)
                let saved = errno
                let end = endPointer.map { UnsafeRawPointer($0) - UnsafeRawPointer(base) } ?? 0
                if saved == ERANGE { return (UInt64.max, end, .tooLarge) }
                if end == 0 { return (0, 0, .invalid) }
                return (v, end, nil)
            }

            // Failures past the digits still end in QEMU's check that the
            // whole input was consumed: trailing text makes any error "invalid".
            func fail(_ error: ParseError, at end: Int) -> Result<UInt64, ParseError> {
                .failure(at(end) == 0 ? error : .invalid)
            }
            var (value, end, error) = parseUnsigned(10)
            if let error { return fail(error, at: end) }
            if buffer[..<end].contains(UInt8(ascii: "-")) { return .failure(.invalid) }
            var fraction: UInt64 = 0
            var isHex = false
            if value == 0 && (at(end) == UInt8(ascii: "x") || at(end) == UInt8(ascii: "X")) {
                (value, end, error) = parseUnsigned(16)
                if let error { return fail(error, at: end) }
                if at(end) == UInt8(ascii: ".") { return .failure(.invalid) }
                isHex = true
            } else if at(end) == UInt8(ascii: ".") {
                var endPointer: UnsafeMutablePointer<CChar>?
                errno = 0
                let f = strtod(base + end, &endPointer)
                let rangeError = errno == ERANGE
                let fractionEnd = endPointer.map { UnsafeRawPointer($0) - UnsafeRawPointer(base) } ?? end
                if fractionEnd == end {
                    end += 1            // "1.k" counts as 1k
                } else if rangeError {
                    // QEMU steps one character past an out-of-range fraction
                    // (skipping what follows it); past the end nothing is valid.
                    guard at(fractionEnd) != 0 else { return .failure(.invalid) }
                    end = fractionEnd + 1
                } else if !f.isFinite {
                    end += 1
                } else {
                    // An exponent makes the whole input invalid.
                    if buffer[end..<fractionEnd].contains(where: { $0 | 0x20 == UInt8(ascii: "e") }) {
                        return .failure(.invalid)
                    }
                    end = fractionEnd
                    // fraction * 2^64; x86-64 turns the out-of-range 2^64 (a
                    // fraction that rounded up to 1.0) into 0, and so do we.
                    let scaled = f * 18446744073709551616.0
                    fraction = scaled >= 18446744073709551616.0 || scaled < 0 ? 0 : UInt64(scaled)
                }
            }
            var multiplier: UInt64 = 1
            if let m = suffixMultiplier(at(end)) {
                if isHex { warn("Using a multiplier suffix on hex numbers is deprecated: \(text)") }
                multiplier = m
                end += 1
            }
            if multiplier == 1 {
                if fraction != 0 { return .failure(.invalid) }
            } else {
                // 64.64 fixed point times an integer, kept exact in 128 bits.
                var (high, low) = value.multipliedFullWidth(by: multiplier)
                let fractional = fraction.multipliedFullWidth(by: multiplier)
                var carry: Bool
                (low, carry) = low.addingReportingOverflow(fractional.high)
                if carry { high &+= 1 }
                (low, carry) = low.addingReportingOverflow(fractional.low >> 63)
                if carry { high &+= 1 }
                if high != 0 { return fail(.tooLarge, at: end) }
                value = low
            }
            guard at(end) == 0 else { return .failure(.invalid) }
            return .success(value)
        }
    }

    /// A pattern byte (qemu-io's -P): strtol in any base, 0...255, nothing after.
    static func patternByte(_ text: String) -> UInt8? {
        guard let (value, rest) = strtol(text, base: 0), rest.isEmpty, (0...255).contains(value) else { return nil }
        return UInt8(value)
    }

    /// strtol(3) on `text`: the value and what follows it (nil if `text`
    /// has an embedded NUL, which the C string would have cut short).
    static func strtol(_ text: String, base: Int32) -> (Int, Substring.UTF8View)? {
        guard !text.utf8.contains(0) else { return nil }
        return text.withCString { start -> (Int, Substring.UTF8View) in
            var end: UnsafeMutablePointer<CChar>?
            let value = Glibc.strtol(start, &end, base)
            let consumed = end.map { UnsafeRawPointer($0) - UnsafeRawPointer(start) } ?? 0
            let utf8 = Substring(text).utf8
            return (value, utf8[utf8.index(utf8.startIndex, offsetBy: consumed)...])
        }
    }

    /// The message for a bad pattern byte.
    static func invalidPattern(_ text: String) -> String { "\(text) is not a valid pattern byte" }
}
