// The fuzzer's bytes, taken apart front to back: a target that needs a few
// choices (flags, a split point) takes them from the front and treats the rest
// as the payload, so that a seed is "a few option bytes + a real file".

public struct FuzzInput {
    public private(set) var bytes: ArraySlice<UInt8>

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = size > 0 && data != nil ? ArraySlice(UnsafeBufferPointer(start: data, count: size)) : []
    }

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes[...]
    }

    /// The next byte, or 0 once the input is used up.
    public mutating func byte() -> UInt8 {
        bytes.popFirst() ?? 0
    }

    /// The next `count` bytes as a big-endian number (missing bytes read as 0).
    public mutating func bigEndian(_ count: Int) -> UInt64 {
        var value: UInt64 = 0
        for _ in 0..<count { value = value << 8 | UInt64(byte()) }
        return value
    }

    /// Splits off the last `count` bytes (all that is left, if fewer).
    public mutating func takeLast(_ count: Int) -> [UInt8] {
        let n = min(max(count, 0), bytes.count)
        let tail = Array(bytes.suffix(n))
        bytes = bytes.dropLast(n)
        return tail
    }

    /// Everything that is left.
    public mutating func rest() -> [UInt8] {
        defer { bytes = [] }
        return Array(bytes)
    }
}

/// A broken invariant: traps, which libFuzzer reports as a crash (and saves
/// the input). Errors thrown by the code under test are never this; only a
/// property the targets check themselves.
public func fuzzRequire(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                        file: StaticString = #file, line: UInt = #line) {
    if !condition() { fatalError("fuzz invariant: " + message(), file: file, line: line) }
}
