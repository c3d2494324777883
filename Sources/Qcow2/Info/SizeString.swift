// Sizes as QEMU prints them for people (size_to_str): three significant
// digits and a binary suffix, switching to the next unit once the number
// would reach 1000 ("1000 bytes" is "0.977 KiB", "1023 MiB" is "0.999 GiB").

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum SizeString {
    private static let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]

    /// "64 MiB", "1.5 TiB", "511 B", "0 B".
    public static func format(_ value: UInt64) -> String {
        // frexp's exponent, less one, is floor(log2(value * 1024 / 1000)).
        var exponent: Int32 = 0
        _ = frexp(Double(value) / (1000.0 / 1024.0), &exponent)
        let unit = Int((exponent - 1) / 10) // C division: -1 / 10 == 0
        let divisor = Double(UInt64(1) << UInt64(unit * 10))
        return printf("%0.3g", Double(value) / divisor) + " " + suffixes[unit] + "B"
    }

    /// One double through a printf format.
    static func printf(_ format: String, _ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([value]) { args in
            buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, args) }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
