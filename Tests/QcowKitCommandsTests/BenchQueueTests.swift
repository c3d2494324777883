// bench's queue depth is real: DEPTH requests are in flight at once. An
// image whose reads wait until DEPTH of them have arrived can only finish
// if that many run together (a deadline turns a missing one into a failure
// instead of a hang).
import BlockGraph
import Qcow2
import Testing
@testable import QcowKitCommands

#if canImport(Glibc)
import Glibc
#endif

/// Reads block until `barrier` readers are inside `read` at the same time.
private final class BarrierImage: BlockImage {
    struct State { var arrived = 0; var released = false; var timedOut = false; var reads = 0 }
    let barrier: Int
    let state: JobLock<State>
    init(barrier: Int) {
        self.barrier = barrier
        state = JobLock(State())
    }
    var format: ImageFormat { .raw }
    var filename: String { "barrier" }
    var size: UInt64 { 1 << 20 }
    var backing: BlockImage? { nil }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        // A generous failsafe, not a measurement: without it a broken queue
        // would hang the suite.
        let deadline = monotonicNanoseconds() + 120_000_000_000
        state.withLock { state, waiter in
            state.reads += 1
            state.arrived += 1
            if state.arrived >= barrier { state.released = true; waiter.broadcast() }
        }
        state.withLock(when: { $0.released }, until: deadline) { state, _ in
            if !state.released { state.timedOut = true }
        }
    }
    func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        BlockStatus(length: length, isData: true, isZero: false, isAllocated: true)
    }
    func close() throws {}
}

@Suite("bench: queue depth")
struct BenchQueueTests {
    @Test("DEPTH requests are in flight together", arguments: [2, 8, 64])
    func depth(_ depth: Int) {
        let image = BarrierImage(barrier: depth)
        var settings = Bench.Settings()
        settings.count = UInt64(depth * 4)
        settings.depth = UInt64(depth)
        settings.step = 4096
        let failure = BenchRun(image: image, settings: settings).run(threads: depth)
        #expect(failure == nil)
        let state = image.state.withLock { $0 }
        #expect(!state.timedOut && state.released && state.reads == depth * 4)
    }
}
