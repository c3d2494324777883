// QEMU's job list and job creation (job.c job_create/job_start,
// blockjob.c block_job_create), and the queries. Main-thread-confined (not
// Sendable): the QMP service's main loop calls every method; worker threads
// only reach it through work they post to the mailbox.

import Qcow2  // spawnWorkerThread

/// All jobs of one service, their verbs and their events.
public final class JobManager {
    let mailbox: MainThreadMailbox
    private let events: (JobEvent) -> Void
    /// Newest first, as QEMU's job list (QLIST_INSERT_HEAD) and so its queries.
    private(set) var jobList: [Job] = []

    /// `events` is called on the main thread, in QEMU's order.
    public init(scheduler: JobScheduler, events: @escaping (JobEvent) -> Void) {
        self.mailbox = MainThreadMailbox(scheduler: scheduler)
        self.events = events
        mailbox.bind(self)
    }

    /// Every job that exists (up to its dismissal), newest first.
    public var jobs: [Job] { jobList }

    public func job(id: String) -> Job? { jobList.first { $0.id == id } }

    /// The job that holds `nodeName` (one of its driver's busy nodes), if any.
    public func blockingJob(forNode nodeName: String) -> Job? {
        jobList.first { $0.driver.busyNodes.contains(nodeName) }
    }

    /// Creates and starts a block job (QEMU's block_job_create + job_start):
    /// emits `created` then `running` before it returns. On a refusal it
    /// throws QEMU's message after calling the driver's `clean()` (a job
    /// refused for its speed has emitted `created` then `null`, as QEMU's).
    /// `speed` is in bytes per second, 0 for unlimited.
    @discardableResult
    public func startBlockJob(id: String, driver: BlockJobDriver, speed: Int64 = 0, autoFinalize: Bool = true,
                              autoDismiss: Bool = true, onError: BlockdevOnError = .report) throws -> Job {
        let job = try createBlockJob(id: id, driver: driver, speed: speed, autoFinalize: autoFinalize,
                                     autoDismiss: autoDismiss, onError: onError)
        start(job)
        return job
    }

    /// Creates a block job and leaves it `created` (QEMU's job_create; a job
    /// waits there for `start`, as jobs of a transaction do). Cancelling it
    /// there ends it without BLOCK_JOB_* events.
    public func createBlockJob(id: String, driver: BlockJobDriver, speed: Int64 = 0, autoFinalize: Bool = true,
                               autoDismiss: Bool = true, onError: BlockdevOnError = .report) throws -> Job {
        func refuse(_ message: String) -> JobError {
            driver.clean()
            return .invalid(message)
        }
        guard isWellFormedID(id) else { throw refuse("Invalid job ID '\(id)'") }
        guard job(id: id) == nil else { throw refuse("Job ID '\(id)' already in use") }
        for node in driver.busyNodes {
            if let holder = blockingJob(forNode: node) {
                throw refuse("Node '\(node)' is busy: block device is in use by block job: \(holder.type)")
            }
        }
        let job = Job(id: id, driver: driver, autoFinalize: autoFinalize, autoDismiss: autoDismiss,
                      onError: onError)
        jobList.insert(job, at: 0)
        transition(job, to: .created)
        // block_job_set_speed runs on the created job: a refusal ends it.
        guard speed >= 0 else {
            doDismiss(job)
            throw refuse(negativeSpeedMessage)
        }
        job.lock.withLock { state in
            state.progressTotal = driver.initialLength
            state.speed = speed
            state.limit.setSpeed(UInt64(speed))
        }
        return job
    }

    /// Starts a created job (QEMU's job_start): `running`, and the driver's
    /// run on a thread of its own.
    public func start(_ job: Job) {
        let startable = job.lock.withLock { (state) -> Bool in
            guard state.status == .created, !state.started else { return false }
            state.pauseCount -= 1
            state.busy = true
            state.parked = false
            state.started = true
            return true
        }
        precondition(startable, "job '\(job.id)' started twice or after it ended")
        transition(job, to: .running)
        let context = JobContext(job: job, mailbox: mailbox)
        if spawnWorkerThread({ context.runWorker() }) {
            // Paused while created: QEMU's first pause point runs inside job_start.
            if job.lock.withLock({ state in state.pauseCount > 0 }) {
                settle(job) { $0.parked || $0.workerFinished }
            }
        } else {
            // Seen as a run that failed at once.
            job.lock.withLock { state in
                state.failure = "Could not start a thread for the job"
                state.deferredToMainLoop = true
                state.workerFinished = true
            }
            mailbox.post { [job] manager in manager.jobExit(job) }
        }
    }

    /// query-jobs.
    public func queryJobs() -> [JobInfo] { jobList.map(\.info) }

    /// query-block-jobs.
    public func queryBlockJobs() -> [BlockJobInfo] { jobList.map(\.blockJobInfo) }

    /// Runs work the job threads have handed to the main thread. The
    /// scheduler's callbacks do this; an embedder without one may call it.
    public func runPendingMainThreadWork() { mailbox.drain() }

    // MARK: Main-thread state changes

    /// QEMU's job_state_transition: only along JobStatus's table (anything
    /// else is a bug in this file, never client input), with an event for
    /// each change.
    func transition(_ job: Job, to next: JobStatus) {
        let previous = job.lock.withLock { (state) -> JobStatus in
            let previous = state.status
            precondition(previous.canMove(to: next), "job '\(job.id)': no transition \(previous) -> \(next)")
            state.status = next
            return previous
        }
        if previous != next { emit(.statusChange(id: job.id, status: next)) }
    }

    func transitionToReady(_ job: Job) {
        transition(job, to: .ready)
        emit(.blockJobReady(job.eventData()))
    }

    func emit(_ event: JobEvent) { events(event) }

    func remove(_ job: Job) { jobList.removeAll { $0 === job } }
}

let negativeSpeedMessage = "Parameter 'speed' expects a non-negative value"
