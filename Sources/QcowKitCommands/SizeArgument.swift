// Numbers and sizes of qemu-img's own flags, over QEMU's size syntax
// (QemuSize, in QMP/CommandLine, which the block options share).
import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// qemu-img's cvtnum_full: a size argument named `name` (for the messages)
/// that must lie in `range`, with qemu-img's two error messages.
enum NumberArgument {
    static func parse(_ name: String, _ text: String, range: ClosedRange<UInt64> = 0...UInt64(Int64.max),
                      warn: (String) -> Void = NumberArgument.warn) throws -> UInt64 {
        let rangeError = CommandFailure(
            "Invalid \(name) specified. Must be between \(range.lowerBound) and \(range.upperBound).")
        switch QemuSize.parse(text) {
        case let .success(size):
            if size.isHexWithSuffix { warn("Using a multiplier suffix on hex numbers is deprecated: \(text)") }
            guard range.contains(size.value) else { throw rangeError }
            return size.value
        case .failure(.outOfRange):
            throw rangeError
        case .failure(.invalid):
            throw CommandFailure(
                "Invalid \(name) specified. You may use k, M, G, T, P or E suffixes for\n"
                + ProgramName.prefixed("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes."))
        }
    }

    /// qemu_strtoul with base 0 over the whole text (leading blanks pass, a
    /// minus wraps around as strtoul's does): nil unless all of it is a number.
    static func unsignedLong(_ text: String) -> UInt64? {
        let chars = Array(text.utf8CString)
        return chars.withUnsafeBufferPointer { buffer -> UInt64? in
            guard let start = buffer.baseAddress, chars.count > 1 else { return nil }
            var endPointer: UnsafeMutablePointer<CChar>?
            errno = 0
            let value = strtoul(start, &endPointer, 0)
            let end = endPointer.map { UnsafePointer($0) - start } ?? 0
            guard errno == 0, end > 0, end == chars.count - 1 else { return nil }
            return UInt64(value)
        }
    }

    /// qemu-img's warning on standard error.
    static func warn(_ message: String) {
        Terminal.printError(ProgramName.prefixed("warning: " + message))
    }
}

/// qemu-img's reading of a size argument (cvtnum) up to INT64_MAX, named in
/// its messages ("image size", "buffer size for sparse output", "rate limit").
enum ImageSizeArgument {
    static func parse(_ text: String, name: String = "image size", warn: (String) -> Void) throws -> UInt64 {
        try NumberArgument.parse(name, text, warn: warn)
    }
}
