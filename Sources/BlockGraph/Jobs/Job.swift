// One job: QEMU's Job + BlockJob state. The status only changes on the main
// thread (JobManager); the rest is shared with the job's worker thread and
// lives in the job's lock, so queries from the main thread see live
// progress while the worker copies.

/// A block job, as query-jobs and query-block-jobs show it.
public final class Job: Sendable {
    /// The job ID (QMP's `id` / `device`).
    public let id: String
    /// The job type ("commit", ...), from the driver.
    public let type: String
    /// Finalize without waiting for `job-finalize` (QMP's auto-finalize).
    public let autoFinalize: Bool
    /// Dismiss once concluded without waiting for `job-dismiss`.
    public let autoDismiss: Bool
    /// What the job does on an I/O error.
    public let onError: BlockdevOnError

    /// `run` is called on the job's worker thread, everything else on the
    /// main thread once the run is over (handed over through the mailbox).
    nonisolated(unsafe) let driver: BlockJobDriver
    /// The state the worker thread and the main thread share.
    let lock = JobLock(State())

    struct State {
        var status: JobStatus = .undefined
        /// Pause requests (QEMU's pause_count): 1 until started, +1 for a user pause.
        var pauseCount = 1
        var userPaused = false
        /// A cancel was requested (QEMU's job->cancelled) ...
        var cancelled = false
        /// ... and it was a forced one (job->force_cancel): the job's result is dropped.
        var forceCancel = false
        var completionRequested = false
        /// The worker is parked in a pause point (QEMU's job->paused).
        var parked = false
        /// The worker sleeps (rate limit, job sleep) until its deadline or a kick.
        var sleeping = false
        /// The worker reached `ready` but has not yet gone idle: the READY
        /// transition is announced when it next sleeps, parks or ends, so a
        /// client that sees the event never finds the job busy for it (in
        /// QEMU the transition and the yield happen without the monitor between).
        var readyAnnouncementPending = false
        var busy = false
        var started = false
        /// The run is over and the job's completion waits for the main thread.
        var deferredToMainLoop = false
        var workerFinished = false
        /// Bumped by every job_enter-like wake-up (pause, cancel, complete, faster speed).
        var kicks: UInt64 = 0
        /// `running` or `ready`, as the worker knows it (the main thread's
        /// status follows through the mailbox).
        var workerStatus: JobStatus = .running
        var progressCurrent: UInt64 = 0
        var progressTotal: UInt64 = 0
        var speed: Int64 = 0
        var limit = RateLimit()
        var ioStatus: BlockDeviceIoStatus = .ok
        /// QEMU's job->err: set when the job failed or was cancelled (ret != 0).
        var failure: String?

        /// QEMU's job_enter: wakes the worker from a sleep.
        mutating func kick(_ waiter: borrowing JobLock<State>.Waiter) {
            kicks &+= 1
            waiter.broadcast()
        }
    }

    init(id: String, driver: BlockJobDriver, autoFinalize: Bool, autoDismiss: Bool, onError: BlockdevOnError) {
        self.id = id
        self.type = driver.jobType
        self.driver = driver
        self.autoFinalize = autoFinalize
        self.autoDismiss = autoDismiss
        self.onError = onError
    }

    public var status: JobStatus { lock.withLock { $0.status } }
    public var currentProgress: UInt64 { lock.withLock { $0.progressCurrent } }
    public var totalProgress: UInt64 { lock.withLock { $0.progressTotal } }
    /// The speed limit in bytes per second (0: none).
    public var speed: Int64 { lock.withLock { $0.speed } }
    /// Paused by `job-pause` or by on-error=stop, until `job-resume`.
    public var isUserPaused: Bool { lock.withLock { $0.userPaused } }
    /// A cancel was requested (forced or not).
    public var isCancelRequested: Bool { lock.withLock { $0.cancelled } }
    /// The job failed or was cancelled: QEMU's error string.
    public var error: String? { lock.withLock { $0.failure } }
    /// The job is in sync and waits for `job-complete`.
    public var isReady: Bool { status.isReady }

    public var info: JobInfo {
        lock.withLock { state in
            JobInfo(id: id, type: type, status: state.status, currentProgress: state.progressCurrent,
                    totalProgress: state.progressTotal, error: state.failure)
        }
    }

    public var blockJobInfo: BlockJobInfo {
        lock.withLock { state in
            BlockJobInfo(type: type, device: id, len: state.progressTotal, offset: state.progressCurrent,
                         busy: state.busy, paused: state.pauseCount > 0, speed: state.speed,
                         ioStatus: state.ioStatus, ready: state.status.isReady, status: state.status,
                         autoFinalize: autoFinalize, autoDismiss: autoDismiss, error: state.failure)
        }
    }

    /// The data of BLOCK_JOB_COMPLETED / _CANCELLED / _READY now.
    func eventData(error: String? = nil) -> BlockJobEventData {
        lock.withLock { state in
            BlockJobEventData(type: type, device: id, len: state.progressTotal, offset: state.progressCurrent,
                              speed: state.speed, error: error)
        }
    }
}
