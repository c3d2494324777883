// How a job ends, on the main thread (QEMU's job_exit, job_completed,
// job_completed_txn_success/abort, job_do_finalize, job_finalize_single,
// job_conclude, job_do_dismiss). Every job is its own transaction here.
//
// Success:  waiting -> pending -> [finalize: prepare, commit, clean]
//           -> BLOCK_JOB_COMPLETED -> concluded -> [dismiss] null
// Failure:  aborting -> [abort, clean] -> BLOCK_JOB_COMPLETED with error -> concluded ...
// Cancel:   aborting -> [abort, clean] -> BLOCK_JOB_CANCELLED -> concluded ...

extension JobManager {
    /// The worker's run is over (QEMU's job_exit bottom half).
    func jobExit(_ job: Job) {
        let completed = job.lock.withLock { (state) -> Bool in
            state.busy = false
            return state.status.isCompleted
        }
        // A cancel may have completed the job meanwhile (it drains this
        // mailbox itself); then there is nothing left to do.
        if !completed { jobCompleted(job) }
    }

    /// QEMU's job_completed.
    func jobCompleted(_ job: Job) {
        if updateResult(job) {
            abortTransaction(job)
        } else {
            transition(job, to: .waiting)
            transition(job, to: .pending)
            if job.autoFinalize {
                doFinalize(job)
            } else {
                emit(.blockJobPending(type: job.type, id: job.id))
            }
        }
    }

    /// QEMU's job_update_rc: a forced cancel turns success into "Operation
    /// canceled"; a failed job moves to `aborting`. Returns whether it failed.
    @discardableResult
    func updateResult(_ job: Job) -> Bool {
        let failed = job.lock.withLock { (state) -> Bool in
            if state.failure == nil && state.cancelled && state.forceCancel {
                state.failure = operationCanceledMessage
            }
            return state.failure != nil
        }
        if failed { transition(job, to: .aborting) }
        return failed
    }

    /// QEMU's job_do_finalize: prepare, then commit or (if prepare failed) abort.
    func doFinalize(_ job: Job) {
        if job.lock.withLock({ state in state.failure == nil }) {
            do {
                try job.driver.prepare()
            } catch {
                job.lock.withLock { state in state.failure = String(describing: error) }
                updateResult(job)
            }
        }
        finalizeSingle(job)
    }

    /// QEMU's job_completed_txn_abort for a transaction of one.
    func abortTransaction(_ job: Job) {
        finalizeSingle(job)
    }

    /// QEMU's job_finalize_single: apply or undo, clean up, tell, conclude.
    func finalizeSingle(_ job: Job) {
        let failed = updateResult(job)
        if failed {
            job.driver.abort()
        } else {
            job.driver.commit()
        }
        job.driver.clean()
        let (started, forced, failure) = job.lock.withLock { state in
            (state.started, state.cancelled && state.forceCancel, state.failure)
        }
        // Only a job that ran tells how it ended.
        if started {
            if forced {
                emit(.blockJobCancelled(job.eventData()))
            } else {
                emit(.blockJobCompleted(job.eventData(error: failure)))
            }
        }
        transition(job, to: .concluded)
        if job.autoDismiss || !started { doDismiss(job) }
    }

    /// QEMU's job_do_dismiss: `null`, and the job is gone.
    func doDismiss(_ job: Job) {
        job.lock.withLock { state in
            state.busy = false
            state.parked = false
            state.deferredToMainLoop = true
        }
        transition(job, to: .null)
        remove(job)
    }
}
