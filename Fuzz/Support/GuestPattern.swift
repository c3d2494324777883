// Guest data that can be recognised wherever it lands in the image file. Each
// 8-byte group at an 8-aligned guest offset g holds a 3-byte tag, the number
// of the write that put it there, and g / 8 (low 32 bits). A host cluster
// holds guest bytes at the same offset within the cluster as in the guest, so
// a group is found at an 8-aligned host position whose low bits agree with
// the group's own offset: metadata the codec writes (table entries, refcounts)
// does not look like that by accident.

public enum GuestPattern {
    static let tag: [UInt8] = [0xF5, 0x7A, 0xC3]

    /// The pattern byte of write `generation` at guest offset `offset`.
    @inline(__always)
    public static func byte(at offset: UInt64, generation: UInt8) -> UInt8 {
        switch offset & 7 {
        case 0, 1, 2: return tag[Int(offset & 7)]
        case 3: return generation
        default:
            let group = UInt32(truncatingIfNeeded: offset >> 3)
            return UInt8(truncatingIfNeeded: group >> (8 * (7 - UInt32(offset & 7))))
        }
    }

    /// `count` pattern bytes of write `generation` from guest offset `offset`.
    public static func bytes(at offset: UInt64, count: Int, generation: UInt8) -> [UInt8] {
        (0..<count).map { byte(at: offset + UInt64($0), generation: generation) }
    }

    /// Whether the 8 bytes at `position` of `bytes` (8-aligned, lying at host
    /// offset `host`) are a pattern group written into a cluster of
    /// `clusterSize` bytes.
    public static func isGroup(_ bytes: UnsafeRawBufferPointer, at position: Int, host: UInt64,
                               clusterSize: UInt64) -> Bool {
        guard bytes[position] == tag[0], bytes[position + 1] == tag[1], bytes[position + 2] == tag[2] else {
            return false
        }
        var group: UInt32 = 0
        for i in 4..<8 { group = group << 8 | UInt32(bytes[position + i]) }
        // Guest and host offsets agree within the cluster.
        let mask = (clusterSize - 1) >> 3
        return UInt64(group) & mask == (host >> 3) & mask
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same workload, so a crash file reproduces.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
