// Pause/resume (user pause semantics and messages), on-error policies,
// set-speed and live progress.
import Glibc
import Testing
@testable import BlockGraph

@Suite struct JobPauseSpeedTests {
    @Test func pauseAndResume() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = JobCancelTests.slowDriver(size: 256 * 1024)
        try manager.startBlockJob(id: "j", driver: driver)
        #expect(throws: JobError.invalid("Can't resume a job that was not paused")) { try manager.resume(id: "j") }
        try manager.pause(id: "j")
        // Paused at once in the query (pause requested), parked soon after.
        #expect(manager.queryBlockJobs().first?.paused == true)
        #expect(throws: JobError.invalid("Job is already paused")) { try manager.pause(id: "j") }
        #expect(harness.pump { manager.job(id: "j")?.status == .paused })
        let offset = try #require(manager.job(id: "j")).currentProgress
        usleep(20_000)
        #expect(try #require(manager.job(id: "j")).currentProgress == offset, "a paused job does not copy")
        #expect(throws: JobError.verbRefused(JobVerbRefused(jobID: "j", status: .paused, verb: .complete))) {
            try manager.complete(id: "j")
        }
        try manager.resume(id: "j")
        #expect(throws: JobError.invalid("Can't resume a job that was not paused")) { try manager.resume(id: "j") }
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "paused", "running", "waiting", "pending", "COMPLETED",
                                       "concluded", "null"])
        #expect(driver.copiedAll)
    }

    @Test func pausedWhileCreated() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        let job = try manager.createBlockJob(id: "j", driver: driver)
        try manager.pause(id: "j")
        manager.start(job)
        // The entry pause point parks it before it copies anything.
        #expect(harness.pump { job.status == .paused })
        #expect(!driver.startedCopying)
        try manager.resume(id: "j")
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "paused", "running", "waiting", "pending", "COMPLETED",
                                       "concluded", "null"])
    }

    @Test func completeOnReady() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        driver.converges = true
        try manager.startBlockJob(id: "j", driver: driver)
        #expect(harness.pump { manager.job(id: "j")?.status == .ready })
        let info = try #require(manager.queryBlockJobs().first)
        #expect(info.ready && info.status == .ready && info.offset == info.len)
        try manager.complete(id: "j")
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "ready", "READY", "waiting", "pending", "COMPLETED",
                                       "concluded", "null"])
        #expect(driver.completedBy == "complete")
    }

    @Test func stopOnErrorPausesUntilResumed() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        driver.failingChunk = 2
        try manager.startBlockJob(id: "j", driver: driver, onError: .stop)
        #expect(harness.pump { manager.job(id: "j")?.status == .paused })
        let info = try #require(manager.queryBlockJobs().first)
        #expect(info.ioStatus == .failed && info.paused && info.offset == 2 * 4096)
        #expect(manager.job(id: "j")?.isUserPaused == true)
        try manager.resume(id: "j")
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "ERROR(read,stop)", "paused", "running", "waiting",
                                       "pending", "COMPLETED", "concluded", "null"])
        #expect(driver.copiedAll)
    }

    @Test func enospcPolicy() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let full = TestCopyDriver()
        full.failingChunk = 1
        full.failureErrno = ENOSPC
        try manager.startBlockJob(id: "full", driver: full, onError: .enospc)
        #expect(harness.pump { manager.job(id: "full")?.status == .paused })
        #expect(manager.queryBlockJobs().first?.ioStatus == .nospace)
        try manager.resume(id: "full")
        #expect(manager.job(id: "full").map { $0.blockJobInfo.ioStatus } ?? .ok == .ok)
        #expect(harness.runToEnd("full"))

        let broken = TestCopyDriver()
        broken.failingChunk = 1
        try manager.startBlockJob(id: "broken", driver: broken, onError: .enospc)
        #expect(harness.runToEnd("broken"))
        #expect(harness.trace("broken") == ["created", "running", "ERROR(read,report)", "aborting", "COMPLETED(error)",
                                            "concluded", "null"])
    }

    @Test func ignorePolicyGoesOn() throws {
        let harness = JobHarness()
        let driver = TestCopyDriver()
        driver.failingChunk = 5
        try harness.manager.startBlockJob(id: "j", driver: driver, onError: .ignore)
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "ERROR(read,ignore)", "waiting", "pending", "COMPLETED",
                                       "concluded", "null"])
    }

    @Test func setSpeedChecks() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        try manager.startBlockJob(id: "j", driver: JobCancelTests.slowDriver(size: 256 * 1024), autoDismiss: false)
        #expect(throws: JobError.invalid("Parameter 'speed' expects a non-negative value")) {
            try manager.setSpeed(id: "j", speed: -5)
        }
        try manager.setSpeed(id: "j", speed: 123_456)
        #expect(manager.queryBlockJobs().first?.speed == 123_456)
        try manager.setSpeed(id: "j", speed: 0)
        #expect(harness.pump { manager.job(id: "j")?.status == .concluded })
        #expect(throws: JobError.verbRefused(JobVerbRefused(jobID: "j", status: .concluded, verb: .setSpeed))) {
            try manager.setSpeed(id: "j", speed: 1)
        }
        #expect(throws: JobError.notFound(id: "nope")) { try manager.setSpeed(id: "nope", speed: 1) }
    }

    /// 256 KiB at 1 MiB/s: QEMU's limiter lets the first 100 ms slice's quota
    /// (~102 KiB) through at once, then holds the rest to the rate, so the
    /// run takes at least ~150 ms. Progress is visible meanwhile.
    @Test func speedLimitsTheRun() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver(size: 256 * 1024)
        let start = ContinuousClock.now
        try manager.startBlockJob(id: "j", driver: driver, speed: 1024 * 1024)
        var midway: [BlockJobInfo] = []
        #expect(harness.pump {
            if let info = manager.queryBlockJobs().first, info.offset > 0, info.offset < info.len {
                midway.append(info)
            }
            return manager.jobs.isEmpty
        })
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(120), "took \(elapsed)")
        #expect(!midway.isEmpty)
        #expect(midway.allSatisfy { $0.speed == 1024 * 1024 && $0.len == 256 * 1024 && $0.status == .running })
        #expect(driver.copiedAll)
    }

    /// At 64 KiB/s, 256 KiB would take ~3 s; lifting the limit wakes the
    /// sleeping job and it finishes at once.
    @Test func liftingTheLimitWakesTheJob() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver(size: 256 * 1024)
        let start = ContinuousClock.now
        try manager.startBlockJob(id: "j", driver: driver, speed: 64 * 1024)
        #expect(harness.pump { driver.startedCopying })
        usleep(50_000)
        #expect(manager.job(id: "j")?.status == .running)
        try manager.setSpeed(id: "j", speed: 0)
        #expect(harness.runToEnd("j"))
        #expect(ContinuousClock.now - start < .milliseconds(2500))
        #expect(driver.copiedAll)
    }
}
