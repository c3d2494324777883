// Cancel in every state that accepts it, with QEMU's event order (checked
// against QEMU 7.2's qemu-storage-daemon: block-commit with a speed limit,
// active commit for ready/standby).
import Glibc
import Testing
@testable import BlockGraph

@Suite struct JobCancelTests {
    /// A job that copies slowly (sleeping 2 ms between 4 KiB chunks: 0.5 s
    /// for the default 1 MiB) so it is still running when the test acts.
    static func slowDriver(size: Int = 1024 * 1024) -> TestCopyDriver {
        let driver = TestCopyDriver(size: size)
        driver.chunkDelayNanoseconds = 2_000_000
        return driver
    }

    @Test func cancelCreated() throws {
        let harness = JobHarness()
        let driver = TestCopyDriver()
        let job = try harness.manager.createBlockJob(id: "j", driver: driver)
        #expect(job.status == .created)
        try harness.manager.cancel(id: "j", force: false)
        // Never started: no BLOCK_JOB_* event, dismissed at once, run never called.
        #expect(harness.trace("j") == ["created", "aborting", "concluded", "null"])
        #expect(driver.calls == ["abort", "clean"])
        #expect(harness.manager.jobs.isEmpty)
    }

    @Test func cancelRunning() throws {
        let harness = JobHarness()
        let driver = Self.slowDriver()
        try harness.manager.startBlockJob(id: "j", driver: driver)
        #expect(harness.pump { driver.startedCopying })
        try harness.manager.cancel(id: "j", force: false)
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "aborting", "CANCELLED", "concluded", "null"])
        #expect(driver.calls == ["run", "abort", "clean"])
        #expect(!driver.copiedAll)
    }

    @Test func cancelPaused() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = Self.slowDriver()
        try manager.startBlockJob(id: "j", driver: driver, autoDismiss: false)
        try manager.pause(id: "j")
        #expect(harness.pump { manager.job(id: "j")?.status == .paused })
        // block-job-cancel refuses a paused job unless forced; job-cancel forces.
        #expect(throws: JobError.invalid("The block job for device 'j' is currently paused")) {
            try manager.blockJobCancel(device: "j", force: false)
        }
        try manager.blockJobCancel(device: "j", force: true)
        #expect(harness.pump { manager.job(id: "j")?.status == .concluded })
        #expect(harness.trace("j") == ["created", "running", "paused", "running", "aborting", "CANCELLED", "concluded"])
        #expect(manager.queryJobs().first?.error == "Operation canceled")
        try manager.dismiss(id: "j")
    }

    @Test func cancelReadyForced() throws {
        let harness = JobHarness()
        let driver = TestCopyDriver()
        driver.converges = true
        try harness.manager.startBlockJob(id: "j", driver: driver)
        #expect(harness.pump { harness.manager.job(id: "j")?.status == .ready })
        try harness.manager.cancel(id: "j", force: true)
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "ready", "READY", "aborting", "CANCELLED", "concluded", "null"])
        #expect(driver.calls == ["run", "abort", "clean"])
    }

    /// QEMU's soft cancel: block-job-cancel without force on a ready mirror /
    /// active commit stops it in sync, without switching over, and reports
    /// BLOCK_JOB_COMPLETED (no error) rather than BLOCK_JOB_CANCELLED.
    @Test func cancelReadySoftCompletes() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        driver.converges = true
        try manager.startBlockJob(id: "j", driver: driver, autoDismiss: false)
        #expect(harness.pump { manager.job(id: "j")?.status == .ready })
        try manager.blockJobCancel(device: "j", force: false)
        #expect(harness.pump { manager.job(id: "j")?.status == .concluded })
        #expect(harness.trace("j") == ["created", "running", "ready", "READY", "waiting", "pending", "COMPLETED",
                                       "concluded"])
        #expect(driver.completedBy == "soft-cancel")
        #expect(driver.calls == ["run", "prepare", "commit", "clean"])
        #expect(manager.queryJobs().first?.error == nil)
        try manager.dismiss(id: "j")
    }

    @Test func cancelStandby() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        driver.converges = true
        try manager.startBlockJob(id: "j", driver: driver)
        #expect(harness.pump { manager.job(id: "j")?.status == .ready })
        try manager.pause(id: "j")
        #expect(harness.pump { manager.job(id: "j")?.status == .standby })
        #expect(manager.queryBlockJobs().first.map { ($0.paused, $0.ready) } ?? (false, false) == (true, true))
        try manager.cancel(id: "j", force: true)
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "ready", "READY", "standby", "ready", "aborting",
                                       "CANCELLED", "concluded", "null"])
    }

    @Test func softCancelledJobCannotBeCompleted() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        driver.converges = true
        driver.honoursSoftCancel = false
        try manager.startBlockJob(id: "j", driver: driver)
        #expect(harness.pump { manager.job(id: "j")?.status == .ready })
        try manager.cancel(id: "j", force: false)
        #expect(manager.job(id: "j")?.status == .ready)
        #expect(throws: JobError.invalid("The active block job 'j' cannot be completed")) {
            try manager.complete(id: "j")
        }
        try manager.cancel(id: "j", force: true)
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j").suffix(4) == ["aborting", "CANCELLED", "concluded", "null"])
    }

    @Test func cancelPending() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        try manager.startBlockJob(id: "j", driver: driver, autoFinalize: false)
        #expect(harness.pump { manager.job(id: "j")?.status == .pending })
        try manager.cancel(id: "j", force: false)
        #expect(harness.trace("j") == ["created", "running", "waiting", "pending", "PENDING", "aborting", "CANCELLED",
                                       "concluded", "null"])
        #expect(driver.calls == ["run", "abort", "clean"])
    }

    @Test func cancelConcludedIsRefused() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        try manager.startBlockJob(id: "j", driver: TestCopyDriver(), autoDismiss: false)
        #expect(harness.pump { manager.job(id: "j")?.status == .concluded })
        #expect(throws: JobError.verbRefused(JobVerbRefused(jobID: "j", status: .concluded, verb: .cancel))) {
            try manager.cancel(id: "j", force: true)
        }
        #expect(throws: JobError.notFound(id: "x")) { try manager.cancel(id: "x", force: true) }
        #expect(JobError.notFound(id: "x").blockJobMessage == "Block job 'x' not found")
        #expect(JobError.notFound(id: "x").description == "Job not found")
    }

    @Test func cancelAllAndWaitEndsEveryJob() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let running = Self.slowDriver()
        let paused = Self.slowDriver()
        let pending = TestCopyDriver()
        let concluded = TestCopyDriver()
        let ready = TestCopyDriver()
        ready.converges = true
        try manager.startBlockJob(id: "concluded", driver: concluded, autoDismiss: false)
        try manager.startBlockJob(id: "pending", driver: pending, autoFinalize: false, autoDismiss: false)
        try manager.startBlockJob(id: "ready", driver: ready)
        try manager.startBlockJob(id: "paused", driver: paused, autoDismiss: false)
        try manager.pause(id: "paused")
        try manager.startBlockJob(id: "running", driver: running)
        #expect(harness.pump {
            manager.job(id: "concluded")?.status == .concluded && manager.job(id: "pending")?.status == .pending
                && manager.job(id: "ready")?.status == .ready && manager.job(id: "paused")?.status == .paused
        })
        manager.cancelAllAndWait()
        #expect(manager.jobs.isEmpty)
        for id in ["running", "paused", "pending", "concluded", "ready"] {
            #expect(harness.trace(id).last == "null", "\(id): \(harness.trace(id))")
        }
        #expect(harness.trace("paused").suffix(5) == ["running", "aborting", "CANCELLED", "concluded", "null"])
        #expect(harness.trace("concluded").suffix(3) == ["COMPLETED", "concluded", "null"])
        for driver in [running, paused, pending, ready] { #expect(driver.calls.suffix(2) == ["abort", "clean"]) }
        // Nothing is left for the scheduler to do.
        harness.scheduler.pump()
        #expect(manager.jobs.isEmpty)
    }
}
