// Byte comparisons for the targets' checks, done by libc: the targets are
// compiled with coverage instrumentation, which would trace every byte of a
// comparison loop written in Swift and make the checks cost more than the
// code under test.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum Bytes {
    /// Whether the two byte sequences are equal.
    public static func equal(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } }
    }

    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool { equal(a[...], b[...]) }

    /// Whether every byte is zero: the first 16 are, and each equals the one 16 later.
    public static func allZero(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return true }
            let head = min(raw.count, 16)
            if memcmp(base, zeroes, head) != 0 { return false }
            return raw.count <= head || memcmp(base, base + head, raw.count - head) == 0
        }
    }

    private static let zeroes = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16).initializeMemory(as: UInt8.self, repeating: 0, count: 16))
}
