// The order in which QEMU walks an object's keys. A QDict is a table of 512
// buckets chosen by a gdbm-style hash of the key; each bucket is a list with
// the newest key first. Everything QEMU prints as JSON (qemu-img's
// --output=json, QMP replies, the "Format specific information" dump) follows
// this order, which is why "backing-filename-format" comes before
// "virtual-size".

public enum QDictOrder {
    /// QDICT_BUCKET_MAX.
    public static let bucketCount: UInt32 = 512

    /// The key's 32-bit hash (tdb_hash: seeded by the length, each byte added
    /// shifted by a rotating amount, then one LCG step).
    public static func hash(_ key: String) -> UInt32 {
        var bytes = Array(key.utf8)
        // QEMU's keys are C strings: a NUL ends them.
        if let nul = bytes.firstIndex(of: 0) { bytes.removeSubrange(nul...) }
        var value = 0x238F_13AF &* UInt32(truncatingIfNeeded: bytes.count)
        for (i, byte) in bytes.enumerated() {
            value = value &+ (UInt32(byte) << UInt32(i * 5 % 24))
        }
        return 1_103_515_243 &* value &+ 12345
    }

    public static func bucket(_ key: String) -> UInt32 {
        hash(key) % bucketCount
    }

    /// `pairs` as QEMU would iterate them after putting them into a QDict in
    /// this order: a repeated key keeps its first place and takes the last
    /// value; buckets ascending, newest key first within a bucket.
    public static func ordered<Value>(_ pairs: [(String, Value)]) -> [(String, Value)] {
        var firstIndex: [String: Int] = [:]
        var unique: [(key: String, value: Value, bucket: UInt32)] = []
        unique.reserveCapacity(pairs.count)
        for (key, value) in pairs {
            if let i = firstIndex[key] {
                unique[i].value = value
            } else {
                firstIndex[key] = unique.count
                unique.append((key, value, bucket(key)))
            }
        }
        let order = unique.indices.sorted { a, b in
            unique[a].bucket != unique[b].bucket ? unique[a].bucket < unique[b].bucket : a > b
        }
        return order.map { (unique[$0].key, unique[$0].value) }
    }
}
