// QEMU's slice-based rate limiter, on a clock the test controls.
import Testing
@testable import BlockGraph

@Suite struct RateLimitTests {
    let ms: UInt64 = 1_000_000

    @Test func unlimitedNeverWaits() {
        var limit = RateLimit()
        limit.setSpeed(0)
        #expect(limit.delay(afterDispatching: UInt64.max, now: 5) == 0)
    }

    @Test func quotaPerSliceThenStretch() {
        var limit = RateLimit()
        limit.setSpeed(1024 * 1024)            // quota 104857 bytes per 100 ms slice
        let start: UInt64 = 1_000 * ms
        #expect(limit.delay(afterDispatching: 0, now: start) == 0)            // opens the slice
        #expect(limit.delay(afterDispatching: 100_000, now: start + 10 * ms) == 0)
        // 209714 bytes = 2 quotas: the slice lasts 200 ms from its start.
        let delay = limit.delay(afterDispatching: 109_714, now: start + 20 * ms)
        #expect(delay == 200 * ms - 20 * ms)
        // Asking again inside the stretched slice keeps the same end.
        #expect(limit.delay(afterDispatching: 0, now: start + 150 * ms) == 50 * ms)
        // After it, a fresh slice: nothing to wait for.
        #expect(limit.delay(afterDispatching: 0, now: start + 201 * ms) == 0)
        #expect(limit.delay(afterDispatching: 50_000, now: start + 202 * ms) == 0)
    }

    @Test func tinySpeedsKeepAQuotaOfOneByte() {
        var limit = RateLimit()
        limit.setSpeed(1)                      // 0.1 byte per slice, rounded up to 1
        #expect(limit.delay(afterDispatching: 0, now: 1) == 0)
        #expect(limit.delay(afterDispatching: 3, now: 1) == 300 * ms)
    }

    @Test func hugeValuesSaturate() {
        var limit = RateLimit()
        limit.setSpeed(UInt64.max)
        // A quota of ~1.8e18 bytes: even UInt64.max bytes need only ~10 slices.
        #expect(limit.delay(afterDispatching: UInt64.max, now: 1) <= 1_000 * ms)
        limit.setSpeed(1)
        _ = limit.delay(afterDispatching: 0, now: 1)
        // Would overflow the slice end: clamped, not trapped.
        #expect(limit.delay(afterDispatching: UInt64.max, now: 1) == UInt64.max - 1)
    }
}
