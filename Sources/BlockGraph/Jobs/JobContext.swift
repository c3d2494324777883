// The worker thread's side of a job (QEMU's job_pause_point, job_sleep_ns,
// block_job_ratelimit_*, block_job_error_action, job_transition_to_ready):
// what a driver's `run` sees. Status changes it causes (paused, standby,
// ready, back to running) are posted to the main thread in the order they
// happen, as QEMU's coroutine makes them in the main loop.
import Glibc

final class JobContext: JobRunContext, Sendable {
    let job: Job
    private let mailbox: MainThreadMailbox

    init(job: Job, mailbox: MainThreadMailbox) {
        self.job = job
        self.mailbox = mailbox
    }

    /// The worker thread's body: the entry pause point, the driver's run,
    /// then hand the job to the main thread (QEMU's job_co_entry).
    func runWorker() {
        var failure: String?
        // QEMU's loops sleep at their top, which opens the first rate-limit
        // slice before the first copy; drivers here account after copying,
        // so open it now to credit the first chunk's copy time the same way.
        job.lock.withLock { state in _ = state.limit.delay(afterDispatching: 0, now: monotonicNanoseconds()) }
        do {
            try pausePoint()
            try job.driver.run(self)
        } catch is JobCancelled {
            // A cancelled job's run ends by cancellation, not failure; a
            // driver that gives up on its own by throwing it failed.
            if !job.lock.withLock({ state in state.forceCancel }) { failure = operationCanceledMessage }
        } catch {
            failure = String(describing: error)
        }
        job.lock.withLock { state, lock in
            if let failure, state.failure == nil { state.failure = failure }
            state.deferredToMainLoop = true
            announceReady(&state)
            state.busy = true
            state.workerFinished = true
            state.parked = false
            // Queued under the lock: once the main thread sees the run as
            // over, the exit work is already in the mailbox.
            mailbox.enqueue { [job] manager in manager.jobExit(job) }
            lock.broadcast()
        }
        mailbox.scheduleDrain()
    }

    func pausePoint() throws {
        // The driver quiesces first (QEMU's job_pause_point calls
        // driver->pause before it yields); a pause asked for after this
        // look parks the job at its next pause point instead.
        let quiesced = job.lock.withLock { $0.pauseCount > 0 && !$0.forceCancel }
        if quiesced { job.driver.pause() }
        // The status changes are queued under the job's lock, together with
        // `parked`, so a main thread that waits for the worker to park or
        // wake (JobManager.settle) finds them in the mailbox.
        let pausedAs: JobStatus? = try job.lock.withLock { (state, lock) -> JobStatus? in
            if state.forceCancel { throw JobCancelled() }
            guard state.pauseCount > 0, quiesced else { return nil }
            let status = state.workerStatus
            state.parked = true
            state.busy = false
            announceReady(&state)
            mailbox.enqueue { [job] manager in
                manager.transition(job, to: status == .ready ? .standby : .paused)
            }
            lock.broadcast()
            return status
        }
        guard let resumeTo = pausedAs else { return }
        mailbox.scheduleDrain()
        let cancelled = job.lock.withLock(when: { $0.pauseCount == 0 || $0.forceCancel }) { state, lock in
            state.parked = false
            state.busy = true
            mailbox.enqueue { [job] manager in manager.transition(job, to: resumeTo) }
            lock.broadcast()
            return state.forceCancel
        }
        mailbox.scheduleDrain()
        if cancelled { throw JobCancelled() }
    }

    func sleep(nanoseconds: UInt64) throws {
        let announced = job.lock.withLock { (state) -> Bool in
            guard state.readyAnnouncementPending, nanoseconds > 0 else { return false }
            state.busy = false
            announceReady(&state)
            return true
        }
        if announced { mailbox.scheduleDrain() }
        let sleep = try job.lock.withLock { (state) -> (deadline: UInt64, kicks: UInt64)? in
            if state.forceCancel { state.busy = true; throw JobCancelled() }
            guard state.pauseCount == 0, nanoseconds > 0 else { state.busy = true; return nil }
            let (sum, overflow) = monotonicNanoseconds().addingReportingOverflow(nanoseconds)
            state.busy = false
            state.sleeping = true
            return (overflow ? UInt64.max - 1 : sum, state.kicks)
        }
        if let sleep {
            // Woken early by a cancel or a kick (a speed change, a pause).
            job.lock.withLock(when: { $0.forceCancel || $0.kicks != sleep.kicks }, until: sleep.deadline) { state, _ in
                state.sleeping = false
                state.busy = true
            }
        }
        try pausePoint()
    }

    func rateLimit(afterCopying bytes: UInt64) throws {
        job.lock.withLock { state in _ = state.limit.delay(afterDispatching: bytes, now: monotonicNanoseconds()) }
        // Sleep at least once (a pause point), and again if woken early
        // while the limit still asks for time (QEMU's block_job_ratelimit_sleep).
        var delay: UInt64
        repeat {
            delay = job.lock.withLock { state in state.limit.delay(afterDispatching: 0, now: monotonicNanoseconds()) }
            try sleep(nanoseconds: delay)
        } while delay > 0
    }

    func setProgress(current: UInt64, total: UInt64) {
        job.lock.withLock { state in
            state.progressCurrent = current
            state.progressTotal = total
        }
    }

    func becameReady() {
        job.lock.withLock { state in
            guard state.workerStatus == .running else { return }
            state.workerStatus = .ready
            state.readyAnnouncementPending = true
        }
    }

    /// Queues the READY transition the worker reached, once; the caller holds
    /// the job's lock and drains the mailbox after releasing it.
    private func announceReady(_ state: inout Job.State) {
        guard state.readyAnnouncementPending else { return }
        state.readyAnnouncementPending = false
        mailbox.enqueue { [job] manager in manager.transitionToReady(job) }
    }

    var isCompletionRequested: Bool { job.lock.withLock { state in state.completionRequested } }

    var isCancelRequested: Bool { job.lock.withLock { state in state.cancelled } }

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
        mailbox.post { manager in manager.emit(event) }
        if action == .stop {
            job.lock.withLock { state in
                // A user-visible pause: the user resumes the job once the
                // cause is fixed. The worker parks at its next pause point.
                if !state.userPaused {
                    state.pauseCount += 1
                    state.userPaused = true
                }
                if state.ioStatus == .ok { state.ioStatus = errorNumber == ENOSPC ? .nospace : .failed }
            }
        }
        return action
    }
}

/// glibc's strerror(ECANCELED), which QEMU stores as a cancelled job's error.
let operationCanceledMessage = "Operation canceled"
