// The worker thread's side of a job (QEMU's job_pause_point, job_sleep_ns,
// block_job_ratelimit_*, block_job_error_action, job_transition_to_ready):
// what a driver's `run` sees. Status changes it causes (paused, standby,
// ready, back to running) are posted to the main thread in the order they
// happen, as QEMU's coroutine makes them in the main loop.
import Glibc

final class JobContext: JobRunContext, @unchecked Sendable {
    let job: Job
    private let manager: JobManager

    init(job: Job, manager: JobManager) {
        self.job = job
        self.manager = manager
    }

    /// The worker thread's body: the entry pause point, the driver's run,
    /// then hand the job to the main thread (QEMU's job_co_entry).
    func runWorker() {
        var failure: String?
        // QEMU's loops sleep at their top, which opens the first rate-limit
        // slice before the first copy; drivers here account after copying,
        // so open it now to credit the first chunk's copy time the same way.
        job.lock.withLock { _ = job.state.limit.delay(afterDispatching: 0, now: monotonicNanoseconds()) }
        do {
            try pausePoint()
            try job.driver.run(self)
        } catch is JobCancelled {
            // A cancelled job's run ends by cancellation, not failure; a
            // driver that gives up on its own by throwing it failed.
            if !job.lock.withLock({ job.state.forceCancel }) { failure = operationCanceledMessage }
        } catch {
            failure = String(describing: error)
        }
        job.lock.withLock {
            if let failure, job.state.failure == nil { job.state.failure = failure }
            job.state.deferredToMainLoop = true
            announceReadyLocked()
            job.state.busy = true
            job.state.workerFinished = true
            job.state.parked = false
            // Queued under the lock: once the main thread sees the run as
            // over, the exit work is already in the mailbox.
            manager.mailbox.enqueue { [manager, job] in manager.jobExit(job) }
            job.lock.broadcast()
        }
        manager.mailbox.scheduleDrain()
    }

    func pausePoint() throws {
        // The status changes are queued under the job's lock, together with
        // `parked`, so a main thread that waits for the worker to park or
        // wake (JobManager.settle) finds them in the mailbox.
        let pausedAs: JobStatus? = try job.lock.withLock {
            if job.state.forceCancel { throw JobCancelled() }
            guard job.state.pauseCount > 0 else { return nil }
            let status = job.state.workerStatus
            job.state.parked = true
            job.state.busy = false
            announceReadyLocked()
            manager.mailbox.enqueue { [manager, job] in
                manager.transition(job, to: status == .ready ? .standby : .paused)
            }
            job.lock.broadcast()
            return status
        }
        guard let resumeTo = pausedAs else { return }
        manager.mailbox.scheduleDrain()
        let cancelled = job.lock.withLock {
            while job.state.pauseCount > 0 && !job.state.forceCancel { job.lock.wait() }
            job.state.parked = false
            job.state.busy = true
            manager.mailbox.enqueue { [manager, job] in manager.transition(job, to: resumeTo) }
            job.lock.broadcast()
            return job.state.forceCancel
        }
        manager.mailbox.scheduleDrain()
        if cancelled { throw JobCancelled() }
    }

    func sleep(nanoseconds: UInt64) throws {
        let announced = job.lock.withLock { () -> Bool in
            guard job.state.readyAnnouncementPending, nanoseconds > 0 else { return false }
            job.state.busy = false
            announceReadyLocked()
            return true
        }
        if announced { manager.mailbox.scheduleDrain() }
        try job.lock.withLock {
            if job.state.forceCancel { job.state.busy = true; throw JobCancelled() }
            guard job.state.pauseCount == 0, nanoseconds > 0 else { job.state.busy = true; return }
            let start = monotonicNanoseconds()
            let (sum, overflow) = start.addingReportingOverflow(nanoseconds)
            let deadline = overflow ? UInt64.max : sum
            let kicks = job.state.kicks
            job.state.busy = false
            job.state.sleeping = true
            defer { job.state.sleeping = false }
            while !job.state.forceCancel && job.state.kicks == kicks && monotonicNanoseconds() < deadline {
                job.lock.wait(until: deadline)
            }
            job.state.busy = true
        }
        try pausePoint()
    }

    func rateLimit(afterCopying bytes: UInt64) throws {
        job.lock.withLock { _ = job.state.limit.delay(afterDispatching: bytes, now: monotonicNanoseconds()) }
        // Sleep at least once (a pause point), and again if woken early
        // while the limit still asks for time (QEMU's block_job_ratelimit_sleep).
        var delay: UInt64
        repeat {
            delay = job.lock.withLock { job.state.limit.delay(afterDispatching: 0, now: monotonicNanoseconds()) }
            try sleep(nanoseconds: delay)
        } while delay > 0
    }

    func setProgress(current: UInt64, total: UInt64) {
        job.lock.withLock {
            job.state.progressCurrent = current
            job.state.progressTotal = total
        }
    }

    func becameReady() {
        job.lock.withLock {
            guard job.state.workerStatus == .running else { return }
            job.state.workerStatus = .ready
            job.state.readyAnnouncementPending = true
        }
    }

    /// Queues the READY transition the worker reached, once; the caller holds
    /// the job's lock and drains the mailbox after releasing it.
    private func announceReadyLocked() {
        guard job.state.readyAnnouncementPending else { return }
        job.state.readyAnnouncementPending = false
        manager.mailbox.enqueue { [manager, job] in manager.transitionToReady(job) }
    }

    var isCompletionRequested: Bool { job.lock.withLock { job.state.completionRequested } }

    var isCancelRequested: Bool { job.lock.withLock { job.state.cancelled } }

    func errorAction(isRead: Bool, errorNumber: Int32) -> BlockErrorAction {
        let action: BlockErrorAction
        switch job.onError {
        case .enospc, .auto: action = errorNumber == ENOSPC ? .stop : .report
        case .stop: action = .stop
        case .report: action = .report
        case .ignore: action = .ignore
        }
        let event = JobEvent.blockJobError(device: job.id, operation: isRead ? "read" : "write",
                                           action: action.rawValue)
        manager.mailbox.post { [manager] in manager.emit(event) }
        if action == .stop {
            job.lock.withLock {
                // A user-visible pause: the user resumes the job once the
                // cause is fixed. The worker parks at its next pause point.
                if !job.state.userPaused {
                    job.state.pauseCount += 1
                    job.state.userPaused = true
                }
                if job.state.ioStatus == .ok { job.state.ioStatus = errorNumber == ENOSPC ? .nospace : .failed }
            }
        }
        return action
    }
}

/// glibc's strerror(ECANCELED), which QEMU stores as a cancelled job's error.
let operationCanceledMessage = "Operation canceled"
