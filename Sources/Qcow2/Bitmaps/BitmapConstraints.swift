// What a bitmap must satisfy to be stored in a qcow2 image (QEMU's
// check_constraints_on_bitmap), in QEMU's order and words. The limits on
// the directory's entries are BitmapDirectory's.

package enum BitmapConstraints {
    static let minGranularityBits = 9
    static let maxGranularityBits = 31
    /// How qemu-img's messages name the image it opened: QEMU makes up a
    /// node name "#block" + a counter + two random digits.
    package static let anonymousNodeName = "#block100"

    /// nil when a bitmap of `name` and `granularity` over `size` guest
    /// bytes can be stored; else QEMU's reason.
    static func violation(name: String, granularity: UInt64, size: UInt64, clusterSize: UInt64) -> String? {
        let bits = granularity.trailingZeroBitCount
        if bits > maxGranularityBits {
            return "Granularity exceeds maximum (\(UInt64(1) << UInt64(maxGranularityBits)) bytes)"
        }
        if bits < minGranularityBits {
            return "Granularity is under minimum (\(UInt64(1) << UInt64(minGranularityBits)) bytes)"
        }
        let bitmapBytes = divideRoundingUp(divideRoundingUp(size, granularity), 8)
        if bitmapBytes > BitmapDirectory.maxPhysicalSize
            || bitmapBytes > UInt64(BitmapDirectory.maxTableSize) * clusterSize {
            return "Too much space will be occupied by the bitmap. Use larger granularity"
        }
        if name.utf8.count > Int(BitmapDirectory.maxNameSize) {
            return "Name length exceeds maximum (\(BitmapDirectory.maxNameSize) characters)"
        }
        return nil
    }

    /// The memory a bitmap of `granularity` over `size` guest bytes holds
    /// at most: its bits in whole 64-bit words (DirtyBitmap's pages).
    static func memory(granularity: UInt64, size: UInt64) -> UInt64 {
        divideRoundingUp(divideRoundingUp(size, granularity), 64) * 8
    }

    /// nil when bitmaps needing `total` bytes fit Qcow2Limits.maxBitmapMemory;
    /// else the message. Checked before any of their bits are allocated.
    static func memoryViolation(total: UInt64) -> String? {
        guard total > Qcow2Limits.maxBitmapMemory else { return nil }
        return "Dirty bitmaps would need \(total) bytes of memory, more than qcowkit's limit of "
            + "\(Qcow2Limits.maxBitmapMemory) bytes"
    }

    /// The memory the consistent bitmaps of a directory need on a guest of
    /// `size` bytes (in-use ones get no bits).
    static func memory(of entries: [BitmapDirectoryEntry], size: UInt64) -> UInt64 {
        entries.reduce(0) { total, entry in
            entry.isInUse ? total
                : total + memory(granularity: UInt64(1) << UInt64(entry.granularityBits), size: size)
        }
    }

    /// QEMU's default granularity: the cluster size, within 4 KiB...64 KiB
    /// (bdrv_get_default_bitmap_granularity).
    static func defaultGranularity(clusterSize: UInt64) -> UInt64 {
        min(65536, max(4096, clusterSize))
    }
}
