// A job asked to pause lets its driver quiesce before it parks (QEMU's
// job_pause_point calling driver->pause; mirror_pause waits for its I/O):
// an active commit's copies on worker threads land before the job shows as
// paused, so a paused job writes nothing.
import Synchronization
import Testing
@testable import BlockGraph

/// Idles at pause points until told to finish; counts its `pause` calls and
/// whether the job had already parked when one came.
final class QuiescingDriver: BlockJobDriver, @unchecked Sendable {
    let jobType = "commit"
    let busyNodes: [String] = []
    let pauses = Atomic<Int>(0)
    let finish = Atomic<Bool>(false)

    func run(_ context: JobRunContext) throws {
        while !finish.load(ordering: .acquiring) { try context.sleep(nanoseconds: 1_000_000) }
    }

    func pause() { pauses.add(1, ordering: .relaxed) }
    func prepare() throws {}
    func commit() {}
    func abort() {}
    func clean() {}
}

@Suite struct JobPauseQuiesceTests {
    @Test func driverQuiescesBeforeTheJobParks() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = QuiescingDriver()
        try manager.startBlockJob(id: "j", driver: driver)
        #expect(harness.pump { manager.job(id: "j")?.status == .running })
        #expect(driver.pauses.load(ordering: .relaxed) == 0)
        try manager.pause(id: "j")
        #expect(harness.pump { manager.job(id: "j")?.status == .paused })
        // Once for this park: the driver was asked before the job parked.
        #expect(driver.pauses.load(ordering: .relaxed) == 1)
        driver.finish.store(true, ordering: .releasing)
        try manager.resume(id: "j")
        #expect(harness.runToEnd("j"))
        #expect(driver.pauses.load(ordering: .relaxed) == 1)
    }
}
