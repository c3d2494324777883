// How a job runs to its end: QEMU's event order for success, failure and
// manual finalize/dismiss, and what the driver is asked to do.
import Glibc
import Testing
@testable import BlockGraph

@Suite struct JobLifecycleTests {
    @Test func successFollows191() throws {
        let harness = JobHarness()
        let driver = TestCopyDriver()
        let job = try harness.manager.startBlockJob(id: "commit0", driver: driver)
        // created and running are emitted before startBlockJob returns.
        #expect(harness.trace("commit0") == ["created", "running"])
        #expect(job.status == .running)
        #expect(harness.runToEnd("commit0"))
        #expect(harness.trace("commit0") == ["created", "running", "waiting", "pending", "COMPLETED", "concluded", "null"])
        #expect(driver.calls == ["run", "prepare", "commit", "clean"])
        #expect(driver.copiedAll)
        let completed = harness.events.compactMap { event -> BlockJobEventData? in
            if case .blockJobCompleted(let data) = event { return data }
            return nil
        }
        #expect(completed == [BlockJobEventData(type: "commit", device: "commit0", len: 65536, offset: 65536, speed: 0)])
        #expect(harness.manager.jobs.isEmpty)
    }

    @Test func failedRunReportsTheError() throws {
        let harness = JobHarness()
        let driver = TestCopyDriver()
        driver.failingChunk = 3
        try harness.manager.startBlockJob(id: "j", driver: driver, autoDismiss: false)
        #expect(harness.pump { harness.manager.job(id: "j")?.status == .concluded })
        #expect(harness.trace("j") == ["created", "running", "ERROR(read,report)", "aborting", "COMPLETED(error)", "concluded"])
        #expect(driver.calls == ["run", "abort", "clean"])
        let error = harness.events.compactMap { event -> String? in
            if case .blockJobCompleted(let data) = event { return data.error }
            return nil
        }
        #expect(error == ["Input/output error"])
        let info = try #require(harness.manager.queryJobs().first)
        #expect(info == JobInfo(id: "j", type: "commit", status: .concluded, currentProgress: 3 * 4096,
                                totalProgress: 65536, error: "Input/output error"))
        try harness.manager.dismiss(id: "j")
        #expect(harness.trace("j").last == "null")
        #expect(harness.manager.jobs.isEmpty)
    }

    @Test func failedPrepareAborts() throws {
        let harness = JobHarness()
        let driver = TestCopyDriver()
        driver.prepareFails = true
        try harness.manager.startBlockJob(id: "j", driver: driver)
        #expect(harness.runToEnd("j"))
        #expect(harness.trace("j") == ["created", "running", "waiting", "pending", "aborting", "COMPLETED(error)",
                                       "concluded", "null"])
        #expect(driver.calls == ["run", "prepare", "abort", "clean"])
    }

    @Test func manualFinalizeAndDismiss() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let driver = TestCopyDriver()
        try manager.startBlockJob(id: "j", driver: driver, autoFinalize: false, autoDismiss: false)
        #expect(harness.pump { manager.job(id: "j")?.status == .pending })
        #expect(harness.trace("j") == ["created", "running", "waiting", "pending", "PENDING"])
        #expect(driver.calls == ["run"])
        // Verbs of other states are refused with QEMU's message.
        #expect(throws: JobError.verbRefused(JobVerbRefused(jobID: "j", status: .pending, verb: .dismiss))) {
            try manager.dismiss(id: "j")
        }
        #expect(throws: JobError.self) { try manager.pause(id: "j") }
        try manager.finalize(id: "j")
        #expect(harness.trace("j").suffix(2) == ["COMPLETED", "concluded"])
        #expect(driver.calls == ["run", "prepare", "commit", "clean"])
        let blockInfo = try #require(manager.queryBlockJobs().first)
        #expect(blockInfo == BlockJobInfo(type: "commit", device: "j", len: 65536, offset: 65536, busy: false,
                                          paused: false, speed: 0, ioStatus: .ok, ready: false, status: .concluded,
                                          autoFinalize: false, autoDismiss: false, error: nil))
        #expect(throws: JobError.verbRefused(JobVerbRefused(jobID: "j", status: .concluded, verb: .finalize))) {
            try manager.finalize(id: "j")
        }
        try manager.dismiss(id: "j")
        #expect(harness.trace("j").last == "null")
        #expect(manager.job(id: "j") == nil)
        #expect(throws: JobError.notFound(id: "j")) { try manager.dismiss(id: "j") }
    }

    @Test func jobIDsAreChecked() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        for bad in ["", "1abc", "a b", "a/b", "é"] {
            let driver = TestCopyDriver()
            #expect(throws: JobError.invalid("Invalid job ID '\(bad)'")) {
                try manager.startBlockJob(id: bad, driver: driver)
            }
            #expect(driver.calls == ["clean"])
        }
        let first = TestCopyDriver()
        first.chunkDelayNanoseconds = 1_000_000
        try manager.startBlockJob(id: "a-1.b_c", driver: first)
        let second = TestCopyDriver()
        #expect(throws: JobError.invalid("Job ID 'a-1.b_c' already in use")) {
            try manager.startBlockJob(id: "a-1.b_c", driver: second)
        }
        #expect(second.calls == ["clean"])
        // A refused job emitted nothing and left the first one alone.
        #expect(harness.trace("a-1.b_c") == ["created", "running"])
        #expect(harness.runToEnd("a-1.b_c"))
        #expect(first.copiedAll)
    }

    @Test func busyNodesAreRefused() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let first = TestCopyDriver(busyNodes: ["top", "mid"])
        first.chunkDelayNanoseconds = 1_000_000
        try manager.startBlockJob(id: "one", driver: first)
        let second = TestCopyDriver(busyNodes: ["mid"])
        #expect(throws: JobError.invalid("Node 'mid' is busy: block device is in use by block job: commit")) {
            try manager.startBlockJob(id: "two", driver: second)
        }
        #expect(manager.blockingJob(forNode: "top")?.id == "one")
        try manager.cancel(id: "one", force: true)
        #expect(harness.runToEnd("one"))
        #expect(manager.blockingJob(forNode: "top") == nil)
    }

    @Test func negativeSpeedEndsTheCreatedJob() throws {
        let harness = JobHarness()
        let driver = TestCopyDriver()
        #expect(throws: JobError.invalid("Parameter 'speed' expects a non-negative value")) {
            try harness.manager.startBlockJob(id: "j", driver: driver, speed: -1)
        }
        #expect(harness.trace("j") == ["created", "null"])
        #expect(driver.calls == ["clean"])
        #expect(harness.manager.jobs.isEmpty)
    }

    @Test func twoConcurrentJobs() throws {
        let harness = JobHarness()
        let manager = harness.manager!
        let one = TestCopyDriver(size: 256 * 1024)
        let two = TestCopyDriver(type: "stream", size: 128 * 1024)
        one.chunkDelayNanoseconds = 100_000
        two.chunkDelayNanoseconds = 100_000
        try manager.startBlockJob(id: "one", driver: one)
        try manager.startBlockJob(id: "two", driver: two)
        // Newest first, as QEMU lists them.
        #expect(manager.queryJobs().map(\.id) == ["two", "one"])
        #expect(manager.queryBlockJobs().map(\.type) == ["stream", "commit"])
        #expect(harness.pump { manager.jobs.isEmpty })
        let expected = ["created", "running", "waiting", "pending", "COMPLETED", "concluded", "null"]
        #expect(harness.trace("one") == expected)
        #expect(harness.trace("two") == expected)
        #expect(one.copiedAll && two.copiedAll)
    }
}
