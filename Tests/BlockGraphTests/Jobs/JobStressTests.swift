// Random verbs against running jobs from the "main" thread while their
// workers copy, pause and sleep: every job must follow QEMU's transition
// table, tell how it ended exactly once, and be gone after cancel-all.
import Glibc
import Testing
@testable import BlockGraph

@Suite struct JobStressTests {
    /// xorshift64*: reproducible per seed.
    struct Random {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state ^= state >> 12; state ^= state << 25; state ^= state >> 27
            return Int((state &* 2685821657736338717) >> 33) % bound
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func randomVerbsKeepTheStateMachine(seed: UInt64) throws {
        var random = Random(state: seed &* 0x9E37_79B9_7F4A_7C15 | 1)
        let harness = JobHarness()
        let manager = harness.manager!
        let ids = ["a", "b", "c", "d"]
        for (index, id) in ids.enumerated() {
            let driver = TestCopyDriver(size: 64 * 1024, chunk: 4096)
            driver.chunkDelayNanoseconds = UInt64(random.next(3)) * 300_000
            driver.converges = index % 2 == 0
            let onError: BlockdevOnError = [.report, .stop, .ignore][random.next(3)]
            if random.next(4) == 0 {
                driver.failingChunk = random.next(16)
                // A lasting error with on-error=ignore retries forever, as in QEMU.
                driver.failAlways = onError != .ignore && random.next(2) == 0
            }
            try manager.startBlockJob(id: id, driver: driver, speed: Int64(random.next(3)) * 256 * 1024,
                                      autoFinalize: random.next(2) == 0, autoDismiss: random.next(2) == 0,
                                      onError: onError)
        }
        for _ in 0..<300 {
            let id = ids[random.next(ids.count)]
            do {
                switch random.next(9) {
                case 0: try manager.pause(id: id)
                case 1: try manager.resume(id: id)
                case 2 where random.next(4) == 0: try manager.cancel(id: id, force: random.next(2) == 0)
                case 3: try manager.complete(id: id)
                case 4: try manager.setSpeed(id: id, speed: Int64(random.next(3)) * 128 * 1024)
                case 5: try manager.finalize(id: id)
                case 6: try manager.dismiss(id: id)
                case 7: _ = (manager.queryJobs(), manager.queryBlockJobs())
                default: usleep(UInt32(random.next(500)))
                }
            } catch is JobError {
                // Refusals are part of the game; crashes and illegal transitions are not.
            }
            harness.scheduler.pump()
        }
        manager.cancelAllAndWait()
        harness.scheduler.pump()
        #expect(manager.jobs.isEmpty)
        for id in ids {
            let trace = harness.trace(id)
            let statuses = trace.compactMap(JobStatus.init(rawValue:))
            #expect(statuses.first == .created && statuses.last == .null, "\(id): \(trace)")
            for (from, to) in zip(statuses, statuses.dropFirst()) {
                #expect(from.canMove(to: to), "\(id): \(from) -> \(to) in \(trace)")
            }
            let endings = trace.filter { $0.hasPrefix("COMPLETED") || $0 == "CANCELLED" }
            #expect(endings.count == 1, "\(id): \(trace)")
            if let ending = endings.first, let at = trace.firstIndex(of: ending) {
                #expect(trace[at + 1] == "concluded", "\(id): \(trace)")
            }
        }
    }
}
