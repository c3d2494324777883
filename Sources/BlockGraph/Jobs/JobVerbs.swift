// The user's verbs (QEMU's job_user_pause/resume/cancel, job_complete,
// job_finalize, job_dismiss, block_job_set_speed, qmp_block_job_cancel) and
// the cancel-everything of quit (job_cancel_sync_all). Each checks what the
// client asked before it changes anything, with QEMU's message and order.

extension JobManager {
    /// `job-cancel` (always forced) and `block-job-cancel`'s core: QEMU's
    /// job_user_cancel. Without `force`, a ready job (mirror, active commit)
    /// finishes in sync without switching over and reports
    /// BLOCK_JOB_COMPLETED; any other job is cancelled outright.
    public func cancel(id: String, force: Bool) throws {
        let job = try find(id)
        try apply(.cancel, to: job)
        cancelJob(job, force: force)
    }

    /// `block-job-cancel`: also refuses a user-paused job unless forced.
    public func blockJobCancel(device: String, force: Bool) throws {
        let job = try find(device)
        if job.isUserPaused && !force {
            throw JobError.invalid("The block job for device '\(device)' is currently paused")
        }
        try apply(.cancel, to: job)
        cancelJob(job, force: force)
    }

    /// `job-pause` / `block-job-pause`.
    public func pause(id: String) throws {
        let job = try find(id)
        try apply(.pause, to: job)
        let wasSleeping = try job.lock.withLock { state, lock in
            if state.userPaused { throw JobError.invalid("Job is already paused") }
            state.userPaused = true
            state.pauseCount += 1
            // Wake a sleeping worker so that it parks now (job_pause's job_enter).
            if !state.parked { state.kick(lock) }
            return state.sleeping
        }
        if wasSleeping { settle(job) { $0.parked || $0.workerFinished } }
    }

    /// `job-resume` / `block-job-resume`.
    public func resume(id: String) throws {
        let job = try find(id)
        let pausedByUser = job.lock.withLock { state in state.userPaused && state.pauseCount > 0 }
        guard pausedByUser else { throw JobError.invalid("Can't resume a job that was not paused") }
        try apply(.resume, to: job)
        let wakes = job.lock.withLock { state, lock in
            // block_job_user_resume: a stop on error is over.
            state.ioStatus = .ok
            state.userPaused = false
            state.pauseCount -= 1
            lock.broadcast()
            return state.parked && state.pauseCount == 0
        }
        if wakes { settle(job) { !$0.parked || $0.workerFinished } }
    }

    /// `job-complete` / `block-job-complete` on a ready job.
    public func complete(id: String) throws {
        let job = try find(id)
        try apply(.complete, to: job)
        try job.lock.withLock { state, lock in
            if state.cancelled { throw JobError.invalid("The active block job '\(id)' cannot be completed") }
            state.completionRequested = true
            state.kick(lock)
        }
    }

    /// `job-finalize` / `block-job-finalize` on a pending job.
    public func finalize(id: String) throws {
        let job = try find(id)
        try apply(.finalize, to: job)
        doFinalize(job)
    }

    /// `job-dismiss` / `block-job-dismiss` on a concluded job.
    public func dismiss(id: String) throws {
        let job = try find(id)
        try apply(.dismiss, to: job)
        doDismiss(job)
    }

    /// `block-job-set-speed` (bytes per second, 0: unlimited).
    public func setSpeed(id: String, speed: Int64) throws {
        let job = try find(id)
        try apply(.setSpeed, to: job)
        guard speed >= 0 else { throw JobError.invalid(negativeSpeedMessage) }
        job.lock.withLock { state, lock in
            let old = state.speed
            guard speed != old else { return }
            state.speed = speed
            state.limit.setSpeed(UInt64(speed))
            // A faster (or no) limit wakes a job sleeping off the old one.
            if speed == 0 || speed > old { state.kick(lock) }
        }
    }

    /// For quit: cancels every job (forced, whatever its state, as QEMU's
    /// job_cancel_sync_all), waits for the worker threads and runs the
    /// completions, until no job is left. Events are emitted as usual.
    public func cancelAllAndWait() {
        while let job = jobList.first {
            cancelJob(job, force: true)
            job.lock.withLock(when: { !$0.started || $0.workerFinished }) { _, _ in }
            mailbox.drain()
        }
    }

    // MARK: Helpers

    func find(_ id: String) throws -> Job {
        guard let job = job(id: id) else { throw JobError.notFound(id: id) }
        return job
    }

    /// QEMU's job_apply_verb.
    func apply(_ verb: JobVerb, to job: Job) throws {
        let status = job.status
        guard verb.isAllowed(in: status) else {
            throw JobError.verbRefused(JobVerbRefused(jobID: job.id, status: status, verb: verb))
        }
    }

    /// QEMU's job_cancel (no verb check: quit uses it in any state).
    func cancelJob(_ job: Job, force: Bool) {
        let status = job.status
        if status == .concluded {
            doDismiss(job)
            return
        }
        // Only jobs that converge (mirror, active commit) know a soft cancel,
        // and only once ready; every other cancel is forced (job_cancel_async
        // with the driver's .cancel, or without one).
        let forced = force || !status.isReady
        let (started, deferred, idle) = job.lock.withLock { (state, lock) -> (Bool, Bool, Bool) in
            if state.userPaused {
                state.ioStatus = .ok
                state.userPaused = false
                state.pauseCount -= 1
            }
            // A soft cancel of a job whose run is over changes nothing.
            if forced || !state.deferredToMainLoop {
                state.cancelled = true
                state.forceCancel = state.forceCancel || forced
            }
            state.kick(lock)
            return (state.started, state.deferredToMainLoop, state.parked || state.sleeping)
        }
        if !started {
            jobCompleted(job)
        } else if deferred {
            guard forced else { return }
            // The run is over: let its exit work run now, which completes
            // the job as cancelled; a job already waiting or pending is
            // aborted here.
            mailbox.drain()
            if job.status == .waiting || job.status == .pending { abortTransaction(job) }
        } else if forced && idle {
            // An idle job ends at once, within the command (QEMU enters its
            // coroutine, which runs to its exit).
            settle(job) { $0.workerFinished }
        }
    }

    /// QEMU's job_enter on an idle job runs the job's coroutine inside the
    /// command until it yields again, so what that does (paused, running,
    /// the whole end of a cancelled job) is emitted before the command
    /// returns. The same here: wait (briefly: the worker only has to get from
    /// its wake-up to `done`, no I/O) and run what it handed over.
    func settle(_ job: Job, until done: (Job.State) -> Bool) {
        let deadline = monotonicNanoseconds() &+ 1_000_000_000
        job.lock.withLock(when: done, until: deadline) { _, _ in }
        mailbox.drain()
    }
}
