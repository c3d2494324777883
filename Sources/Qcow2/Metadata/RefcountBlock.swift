// Refcount block coding: entry `i` of a block, for every width. Entries of 8
// bits and more are big-endian integers; narrower entries are packed into
// bytes starting at the least significant bit, as QEMU (and the spec's
// "refcount_block_entry = (block[i / per_byte] >> (i % per_byte * bits))")
// lays them out.

/// Reads and writes refcount entries in a raw buffer (a block in a cache,
/// a cluster read from disk). Callers keep `index` inside the buffer.
package enum RefcountCoding {
    @inlinable
    package static func get(_ buffer: UnsafeRawBufferPointer, index: Int, width: RefcountWidth) -> UInt64 {
        switch width.order {
        case 0, 1, 2:
            let bits = Int(width.bits)
            let perByte = 8 / bits
            let byte = buffer[index / perByte]
            let shift = (index % perByte) * bits
            return UInt64((byte >> UInt8(shift)) & UInt8((1 << bits) - 1))
        case 3:
            return UInt64(buffer[index])
        case 4:
            return UInt64(BigEndian.load(UInt16.self, from: buffer, at: index * 2))
        case 5:
            return UInt64(BigEndian.load(UInt32.self, from: buffer, at: index * 4))
        default:
            return BigEndian.load(UInt64.self, from: buffer, at: index * 8)
        }
    }

    /// Stores `value`, which must fit the width (checked: a wider value is a
    /// caller bug, never silently truncated).
    @inlinable
    package static func set(_ buffer: UnsafeMutableRawBufferPointer, index: Int, value: UInt64, width: RefcountWidth) {
        precondition(value <= width.maxValue, "refcount \(value) exceeds \(width.bits)-bit entry")
        switch width.order {
        case 0, 1, 2:
            let bits = Int(width.bits)
            let perByte = 8 / bits
            let shift = UInt8((index % perByte) * bits)
            let mask = UInt8((1 << bits) - 1) << shift
            let old = buffer[index / perByte]
            buffer[index / perByte] = (old & ~mask) | (UInt8(value) << shift)
        case 3:
            buffer[index] = UInt8(value)
        case 4:
            BigEndian.store(UInt16(value), into: buffer, at: index * 2)
        case 5:
            BigEndian.store(UInt32(value), into: buffer, at: index * 4)
        default:
            BigEndian.store(value, into: buffer, at: index * 8)
        }
    }
}

/// One refcount block: a cluster of refcount entries of one width.
package struct RefcountBlock: Equatable, Sendable {
    package let width: RefcountWidth
    /// The block's bytes exactly as on disk (one cluster).
    package private(set) var bytes: [UInt8]

    /// A block of zero refcounts.
    package init(clusterSize: Int, width: RefcountWidth) {
        self.width = width
        bytes = [UInt8](repeating: 0, count: clusterSize)
    }

    /// A block read from disk; `bytes` is one cluster.
    package init(bytes: [UInt8], width: RefcountWidth) {
        self.width = width
        self.bytes = bytes
    }

    /// Number of entries: cluster_size * 8 / refcount_bits.
    package var entryCount: Int { (bytes.count * 8) >> Int(width.order) }

    package subscript(index: Int) -> UInt64 {
        get {
            precondition(index >= 0 && index < entryCount)
            return bytes.withUnsafeBytes { RefcountCoding.get($0, index: index, width: width) }
        }
        set {
            precondition(index >= 0 && index < entryCount)
            bytes.withUnsafeMutableBytes { RefcountCoding.set($0, index: index, value: newValue, width: width) }
        }
    }

    /// True when every entry is zero.
    package var isEmpty: Bool { bytes.allSatisfy { $0 == 0 } }
}
