// Big-endian coding of on-disk fields, in one place. Every qcow2 structure is
// big-endian; the rest of the codec sees native integers.

/// Reads and writes big-endian integers in a byte array at explicit offsets.
/// Callers bound-check against the structure they decode; these helpers trap on
/// out-of-range offsets like any array access.
package enum BigEndian {
    @inlinable
    package static func load<T: FixedWidthInteger>(_: T.Type, from bytes: [UInt8], at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= bytes.count)
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size {
            value = (value << 8) | T(truncatingIfNeeded: bytes[offset + i])
        }
        return value
    }

    @inlinable
    package static func load<T: FixedWidthInteger>(_: T.Type, from bytes: UnsafeRawBufferPointer, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= bytes.count)
        return T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    @inlinable
    package static func store<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= bytes.count)
        let size = MemoryLayout<T>.size
        for i in 0..<size {
            bytes[offset + i] = UInt8(truncatingIfNeeded: value >> ((size - 1 - i) * 8))
        }
    }

    @inlinable
    package static func store<T: FixedWidthInteger>(_ value: T, into bytes: UnsafeMutableRawBufferPointer, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= bytes.count)
        bytes.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
    }
}

extension Array where Element == UInt8 {
    func be<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        BigEndian.load(type, from: self, at: offset)
    }
    mutating func setBE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        BigEndian.store(value, into: &self, at: offset)
    }
}
