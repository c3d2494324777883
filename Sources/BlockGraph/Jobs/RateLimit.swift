// QEMU's RateLimit (include/qemu/ratelimit.h) as block jobs use it: time is
// cut into slices of 100 ms (BLOCK_JOB_SLICE_TIME), each with a quota of
// speed * slice bytes. Going over the quota stretches the slice in proportion
// and the job sleeps until its end, so the average rate converges on `speed`.

struct RateLimit {
    /// BLOCK_JOB_SLICE_TIME.
    static let sliceNanoseconds: UInt64 = 100_000_000

    private var sliceStart: UInt64 = 0
    private var sliceEnd: UInt64 = 0
    private var sliceQuota: UInt64 = 0
    private var dispatched: UInt64 = 0

    /// Bytes per second; 0 turns throttling off.
    mutating func setSpeed(_ speed: UInt64) {
        if speed == 0 {
            sliceQuota = 0
        } else {
            let quota = Double(speed) * Double(Self.sliceNanoseconds) / 1_000_000_000
            sliceQuota = quota >= Double(UInt64.max) ? UInt64.max : max(UInt64(quota), 1)
        }
    }

    /// Accounts `bytes` more at `now`; returns how long to wait (ns) before
    /// going on, 0 for not at all.
    mutating func delay(afterDispatching bytes: UInt64, now: UInt64) -> UInt64 {
        guard sliceQuota > 0 else { return 0 }
        if sliceEnd < now {
            // The previous (possibly stretched) slice is over: start afresh.
            sliceStart = now
            sliceEnd = now &+ Self.sliceNanoseconds
            dispatched = 0
        }
        let (sum, overflow) = dispatched.addingReportingOverflow(bytes)
        dispatched = overflow ? UInt64.max : sum
        if dispatched < sliceQuota { return 0 }
        // Over quota: the slice lasts as many slices as the bytes sent need.
        let slices = Double(dispatched) / Double(sliceQuota)
        let stretch = slices * Double(Self.sliceNanoseconds)
        let end = stretch >= Double(UInt64.max - sliceStart) ? UInt64.max : sliceStart + UInt64(stretch)
        sliceEnd = end
        return end > now ? end - now : 0
    }
}
