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

package enum SizeString {
    private static let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]

    /// "64 MiB", "1.5 TiB", "511 B", "0 B".
    package static func format(_ value: UInt64) -> String {
        // frexp's exponent, less one, is floor(log2(value * 1024 / 1000)).
        var exponent: Int32 = 0
        _ = frexp(Double(value) / (1000.0 / 1024.0), &exponent)
        let unit = Int((exponent - 1) / 10) // C division: -1 / 10 == 0
        let divisor = Double(UInt64(1) << UInt64(unit * 10))
        return threeSignificantDigits(Double(value) / divisor) + " " + suffixes[unit] + "B"
    }

    /// printf's "%0.3g". gcvt is that very sprintf in glibc and musl, and
    /// unlike a CVarArg list it needs no dynamic cast: the first such cast
    /// in a process scans every protocol conformance, a sizeable part of
    /// `qcowkit info`'s run time.
    static func threeSignificantDigits(_ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        return buffer.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress, let text = gcvt(value, 3, base) else { return "" }
            return String(cString: text)
        }
    }
}
