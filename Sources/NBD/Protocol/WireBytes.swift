// Big-endian coding of the protocol's fields, in one place: a writer that
// appends to a byte array and a reader over received bytes that never reads
// past what it was given.

/// Builds a message by appending big-endian fields.
struct WireWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 32) { bytes.reserveCapacity(capacity) }

    mutating func append(_ value: UInt16) { appendBigEndian(UInt64(value), count: 2) }
    mutating func append(_ value: UInt32) { appendBigEndian(UInt64(value), count: 4) }
    mutating func append(_ value: UInt64) { appendBigEndian(value, count: 8) }
    mutating func append<S: Sequence>(bytes more: S) where S.Element == UInt8 { bytes.append(contentsOf: more) }
    mutating func append(zeroes count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }

    private mutating func appendBigEndian(_ value: UInt64, count: Int) {
        for index in stride(from: count - 1, through: 0, by: -1) {
            bytes.append(UInt8(truncatingIfNeeded: value >> (UInt64(index) * 8)))
        }
    }
}

/// Reads big-endian fields from the front of received bytes; each read
/// returns nil once the bytes run out.
struct WireReader {
    private let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    mutating func uint16() -> UInt16? { bigEndian(2).map { UInt16($0) } }
    mutating func uint32() -> UInt32? { bigEndian(4).map { UInt32($0) } }
    mutating func uint64() -> UInt64? { bigEndian(8) }

    mutating func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, count <= remaining else { return nil }
        defer { position += count }
        return Array(bytes[position..<position + count])
    }

    private mutating func bigEndian(_ count: Int) -> UInt64? {
        guard count <= remaining else { return nil }
        var value: UInt64 = 0
        for index in 0..<count { value = value << 8 | UInt64(bytes[position + index]) }
        position += count
        return value
    }
}
