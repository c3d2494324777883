// Sizes as qemu-img reads them (QEMU 7.2's qemu_strtosz): a decimal number,
// optionally with a fraction, or a 0x hexadecimal number, then an optional
// suffix b/B (bytes) or k, M, G, T, P, E (binary multiples, either case).
// A fraction needs a suffix above bytes and is kept to 64 binary places, the
// product rounded half up; hex with a suffix is accepted with a warning.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public struct QemuSize: Equatable, Sendable {
    public var value: UInt64
    /// Hex with a multiplier suffix: deprecated, qemu-img warns.
    public var isHexWithSuffix: Bool

    public enum Failure: Error, Equatable, Sendable {
        case invalid
        case outOfRange
    }

    /// The multiplier of a suffix character, nil if it is none.
    static func suffixMultiplier(_ c: UInt8) -> UInt64? {
        switch c {
        case UInt8(ascii: "b"), UInt8(ascii: "B"): return 1
        case UInt8(ascii: "k"), UInt8(ascii: "K"): return 1 << 10
        case UInt8(ascii: "m"), UInt8(ascii: "M"): return 1 << 20
        case UInt8(ascii: "g"), UInt8(ascii: "G"): return 1 << 30
        case UInt8(ascii: "t"), UInt8(ascii: "T"): return 1 << 40
        case UInt8(ascii: "p"), UInt8(ascii: "P"): return 1 << 50
        case UInt8(ascii: "e"), UInt8(ascii: "E"): return 1 << 60
        default: return nil
        }
    }

    /// Parses the whole of `text`.
    public static func parse(_ text: String) -> Result<QemuSize, Failure> {
        let chars = Array(text.utf8CString)
        return chars.withUnsafeBufferPointer { buffer -> Result<QemuSize, Failure> in
            guard let start = buffer.baseAddress else { return .failure(.invalid) }
            return parse(start, count: chars.count - 1)
        }
    }

    private static func parse(_ s: UnsafePointer<CChar>, count: Int) -> Result<QemuSize, Failure> {
        func byte(_ i: Int) -> UInt8 { i < count ? UInt8(bitPattern: s[i]) : 0 }
        // The end position, and whether anything may follow it: QEMU checks
        // for trailing characters only on its way out, whatever went wrong.
        func finish(_ end: Int, _ result: Result<QemuSize, Failure>) -> Result<QemuSize, Failure> {
            if byte(end) != 0 { return .failure(.invalid) }
            return result
        }
        func unsigned(base: Int32) -> (value: UInt64, end: Int, error: Failure?) {
            var endPointer: UnsafeMutablePointer<CChar>?
            errno = 0
            let value = strtoull(s, &endPointer, base)
            let end = endPointer.map { UnsafePointer($0) - s } ?? 0
            if errno == ERANGE { return (.max, end, .outOfRange) }
            if end == 0 { return (value, end, .invalid) }
            return (value, end, nil)
        }

        var (value, end, error) = unsigned(base: 10)
        if let error { return finish(end, .failure(error)) }
        if (0..<end).contains(where: { byte($0) == UInt8(ascii: "-") }) { return finish(0, .failure(.invalid)) }

        var isHex = false
        var fraction: UInt64 = 0  // 64-bit fixed point
        if value == 0 && (byte(end) == UInt8(ascii: "x") || byte(end) == UInt8(ascii: "X")) {
            (value, end, error) = unsigned(base: 16)
            if let error { return finish(end, .failure(error)) }
            if byte(end) == UInt8(ascii: ".") { return finish(0, .failure(.invalid)) }
            isHex = true
        } else if byte(end) == UInt8(ascii: ".") {
            let f = end
            var endPointer: UnsafeMutablePointer<CChar>?
            errno = 0
            let parsed = strtod(s + f, &endPointer)
            let parsedEnd = endPointer.map { UnsafePointer($0) - s } ?? f
            if errno != 0 || parsedEnd == f || !parsed.isFinite {
                // No usable fraction ("1.k"): skip the dot.
                end = (errno == ERANGE ? parsedEnd : f) + 1
            } else if (f..<parsedEnd).contains(where: { byte($0) == UInt8(ascii: "e") || byte($0) == UInt8(ascii: "E") }) {
                return finish(0, .failure(.invalid))
            } else {
                end = parsedEnd
                let scaled = parsed * 0x1p64
                // C's conversion of 2^64 (a fraction rounded up to 1) gives 0 on x86-64.
                fraction = scaled < 0x1p64 ? UInt64(scaled) : 0
            }
        }

        var multiplier: UInt64 = 1
        if let m = suffixMultiplier(byte(end)) {
            multiplier = m
            end += 1
        } else {
            isHex = false  // the warning is only for a suffix
        }
        if multiplier == 1 {
            if fraction != 0 { return finish(0, .failure(.invalid)) }
        } else {
            // 64.64 fixed point times a 64-bit integer, rounded half up.
            var (high, low) = value.multipliedFullWidth(by: multiplier)
            let (fractionHigh, fractionLow) = fraction.multipliedFullWidth(by: multiplier)
            var carry: Bool
            (low, carry) = low.addingReportingOverflow(fractionHigh)
            if carry { high &+= 1 }
            (low, carry) = low.addingReportingOverflow(fractionLow >> 63)
            if carry { high &+= 1 }
            if high != 0 { return finish(end, .failure(.outOfRange)) }
            value = low
        }
        return finish(end, .success(QemuSize(value: value, isHexWithSuffix: isHex)))
    }
}
