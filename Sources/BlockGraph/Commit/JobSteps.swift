// How the block jobs' copying runs step by step under the job's on-error
// policy (QEMU's block_job_error_action around each step of commit_run,
// stream_run and mirror's first pass): a failed step is reported (the job
// fails) or retried from where it was, after the next pause point.

extension JobRunContext {
    /// Runs one step of a job's copying; on an I/O failure asks the on-error
    /// policy: `report` throws, `ignore` and `stop` return false (the caller
    /// retries the step after its next pause point, as QEMU's jobs do).
    func attempt(_ step: () throws -> Void) throws -> Bool {
        do {
            try step()
            return true
        } catch let failure as BlockJobIOFailure {
            switch errorAction(isRead: failure.operation == .read, errorNumber: failure.errorNumber) {
            case .report: throw failure
            case .ignore, .stop: return false
            }
        }
    }

    /// A step the job cannot go on without (growing base, the last flush):
    /// attempted until it succeeds or the policy reports its failure.
    func retry(_ step: () throws -> Void) throws {
        while try !attempt(step) { try pausePoint() }
    }

    /// Walks [0, length) a step at a time, a pause point before each:
    /// `step` handles the run at an offset and says how long it was and
    /// whether it copied it; a failed step is retried from the same offset
    /// unless the policy reports it. With `reportingProgress`, progress is
    /// the offset reached and copied runs count against the speed limit.
    func forEachStep(upTo length: UInt64, reportingProgress: Bool = true,
                     _ step: (_ offset: UInt64) throws -> (run: UInt64, copied: Bool)) throws {
        var offset: UInt64 = 0
        while offset < length {
            try pausePoint()
            var done: (run: UInt64, copied: Bool) = (0, false)
            guard try attempt({ done = try step(offset) }) else { continue }
            offset += done.run
            guard reportingProgress else { continue }
            setProgress(current: offset, total: length)
            if done.copied { try rateLimit(afterCopying: done.run) }
        }
    }
}
