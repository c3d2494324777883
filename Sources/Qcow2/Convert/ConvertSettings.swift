// What decides how a convert copies: qemu-img convert's ImgConvertState
// without its running state. The command line (or an export with the
// defaults) fills it in; `ConvertCopy` follows it.

/// How `ConvertCopy` copies a guest disk into a target (qemu-img convert's
/// flags after parsing).
package struct ConvertSettings: Sendable {
    /// The unit qemu-img convert counts in (BDRV_SECTOR_SIZE).
    package static let sectorSize = 512
    /// Most requests in flight at once (MAX_COROUTINES, -m).
    package static let maxParallel = 16
    /// The largest request buffer and -S value, in sectors (MAX_BUF_SECTORS).
    package static let maxBufferSectors = 32768
    /// Default request buffer: 2 MiB (IO_BUF_SIZE).
    package static let defaultBufferSectors = 4096

    /// Zero runs at least this many sectors long are not written (-S / 512);
    /// 0 writes every sector, zero ranges included.
    package var minSparse = 8
    /// Data is written compressed, a cluster at a time (-c).
    package var compressed = false
    /// The target reads as zeroes already (a new image without backing, or
    /// --target-is-zero): zero ranges are skipped instead of zero-written.
    package var targetIsZero = false
    /// The target has a backing file (-B): ranges the source's top image
    /// leaves unallocated stay unallocated, so the backing shows through.
    package var targetHasBacking = false
    /// The target's backing file size in sectors, when known; zero ranges
    /// past it need not be written (they read as zeroes there anyway).
    package var targetBackingSectors: Int64?
    /// Writes go to the target in guest order (qemu-img's default; -W lifts it).
    package var inOrder = true
    /// Requests in flight at once, each on a worker thread (-m).
    package var parallel = 8
    /// Data ranges are copied with copy_file_range where both sides are
    /// plain files (-C), without zero detection.
    package var copyOffload = false
    /// Unreadable ranges become zeroes, with a warning (--salvage).
    package var salvage = false
    /// Every write is followed by a flush (cache modes writethrough and
    /// directsync: each write is durable before the next starts).
    package var flushAfterWrite = false
    /// Bytes written per second at most; 0 for no limit (-r).
    package var rateLimit: UInt64 = 0
    /// The target's cluster size in sectors (0 for raw).
    package var clusterSectors = 0
    /// Sectors per request at most.
    package var bufferSectors = ConvertSettings.defaultBufferSectors
    /// Zero detection keeps write boundaries on multiples of this many
    /// sectors: the largest power of two not above `minSparse` (at least 1).
    package var alignment: Int {
        guard minSparse > 1 else { return 1 }
        return 1 << (Int.bitWidth - 1 - minSparse.leadingZeroBitCount)
    }

    package init() {}
}

/// What a convert reports as it goes: progress (qemu-img's percentage of
/// allocated sectors done) and warnings (salvaged read errors). Called from
/// worker threads, one call at a time.
package struct ConvertReporter: Sendable {
    package var progress: (@Sendable (Float) -> Void)?
    package var warning: @Sendable (String) -> Void

    package init(progress: (@Sendable (Float) -> Void)? = nil, warning: @escaping @Sendable (String) -> Void = { _ in }) {
        self.progress = progress
        self.warning = warning
    }
}
