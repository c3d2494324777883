// job-complete on a ready job that the user paused (standby): QEMU 7.2 takes
// the request (its verb table allows complete in standby since 6.0) and
// the job completes once resumed; qemu-storage-daemon 7.2 was seen to do so.
import Glibc
import Testing
@testable import BlockGraph

@Suite struct JobCompleteStandbyTests {
    @Test func completeInStandbyTakesEffectOnResume() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        driver.converges = true
        try manager.startBlockJob(id: "j", driver: driver)
        #expect(harness.pump { manager.job(id: "j")?.status == .ready })
        try manager.pause(id: "j")
        #expect(harness.pump { manager.job(id: "j")?.status == .standby })
        try manager.complete(id: "j")
        // Still parked: nothing happens until the resume.
        usleep(20_000)
        harness.scheduler.pump()
        #expect(manager.job(id: "j")?.status == .standby)
        try manager.resume(id: "j")
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "ready", "READY", "standby", "ready", "waiting",
                                       "pending", "COMPLETED", "concluded", "null"])
        #expect(driver.completedBy == "complete")
    }
}
