// The seam between the job layer (Jobs/: state machine, verbs, events) and
// the work a block job does (Commit/, and stream or mirror later). The job
// layer owns the life cycle and the threads; a driver owns the data.
//
// Threads: `run` is called on a worker thread of the job's own; `prepare`,
// `commit`, `abort` and `clean` are called on the thread that owns the graph
// (the service's main loop), like QEMU's JobDriver callbacks in job_exit.
// `run` must never wait for the main thread: the main thread waits for it
// (cancel of an idle job, quit's cancelAllAndWait).

import Glibc

/// What a running job's work sees of its job: progress, rate limit, pause
/// and cancel points, readiness.
public protocol JobRunContext: AnyObject {
    /// A pause point (QEMU's job_pause_point): returns at once unless the job
    /// is paused, then blocks until resumed. Throws `JobCancelled` once the
    /// job is cancelled; the driver lets it propagate.
    func pausePoint() throws
    /// Sleeps as long as the speed limit asks after `bytes` more were copied
    /// (0 for none), staying a pause point while it sleeps.
    func rateLimit(afterCopying bytes: UInt64) throws
    /// Progress as QMP's `offset` / `len` (job-level current/total).
    func setProgress(current: UInt64, total: UInt64)
    /// For jobs that converge (active commit, mirror): the job is in sync.
    /// Moves the job to `ready` and emits BLOCK_JOB_READY (once).
    func becameReady()
    /// Set once the user has completed a ready job (`job-complete`).
    var isCompletionRequested: Bool { get }
    /// Set once the job was cancelled, forced or not. Only a ready job sees
    /// it without its pause points throwing: `block-job-cancel` without
    /// force on a ready job asks it to stop in sync but without switching
    /// over (QEMU's soft cancel of mirror / active commit). Such a driver's
    /// `run` returns normally, and the job completes (BLOCK_JOB_COMPLETED).
    var isCancelRequested: Bool { get }
    /// Sleeps about `nanoseconds` (QEMU's job_sleep_ns): a pause point, woken
    /// early by cancel, pause, complete or a higher speed. Throws
    /// `JobCancelled` once the job is cancelled.
    func sleep(nanoseconds: UInt64) throws
    /// What to do about an I/O error (QEMU's block_job_error_action) under
    /// the job's on-error policy; emits BLOCK_JOB_ERROR. `.report`: fail
    /// (throw the error); `.ignore`: go on or retry; `.stop`: the job is now
    /// user-paused, retry after the next pause point. `errorNumber` is the
    /// errno (ENOSPC matters for on-error=enospc).
    func errorAction(isRead: Bool, errorNumber: Int32) -> BlockErrorAction
}

/// The job was cancelled; thrown by the context's pause points.
public struct JobCancelled: Error, Equatable, Sendable {
    public init() {}
}

/// The work of one kind of block job.
public protocol BlockJobDriver: AnyObject {
    /// QMP's job type ("commit", "stream", "mirror", ...).
    var jobType: String { get }
    /// Node names the job works on; a second job on any of them is refused
    /// while this one exists (QEMU's "Node 'x' is busy: block device is in
    /// use by block job: commit").
    var busyNodes: [String] { get }
    /// The job's `len` as soon as it exists: QEMU's commit and stream set it
    /// before their first yield, so a query right after the command shows
    /// it. 0 (the default) where it is only known once the run has started.
    var initialLength: UInt64 { get }
    /// The job's body, on a worker thread: copy, report progress, honour the
    /// context's pause points. Returning normally means success. Idle waits
    /// go through `context.sleep` (not usleep), so that pause, cancel and
    /// complete wake it. I/O errors go through `context.errorAction`.
    /// A ready job also ends when `isCancelRequested` (a soft cancel).
    func run(_ context: JobRunContext) throws
    /// QEMU's JobDriver.pause: at a pause point of a job asked to pause,
    /// on the run's thread, before the job parks (and shows as paused). A
    /// driver with I/O in flight on other threads waits for it here, so
    /// that a paused job writes nothing (mirror_pause).
    func pause()
    /// After a successful run, before the graph is changed; may still fail
    /// (the job then aborts). Main thread.
    func prepare() throws
    /// Applies the job's result to the graph (commit: relink and drop the
    /// committed range). Main thread; must not fail. A converging job that
    /// ended by a soft cancel also gets here: it must not switch over unless
    /// `isCompletionRequested` was set when its run ended.
    func commit()
    /// Undoes what `prepare` or `run` left behind after a failure or cancel.
    /// Main thread.
    func abort()
    /// Last call in every outcome: release nodes, restore read-only flags.
    /// Main thread. Also called, alone, when the job manager refuses the job
    /// (bad or duplicate job ID, busy node, negative speed).
    func clean()
}

extension BlockJobDriver {
    public var initialLength: UInt64 { 0 }
    public func pause() {}
}

/// Defaults for contexts other than the job manager's (drivers' test
/// harnesses): no soft cancel, plain sleeps, every error reported.
extension JobRunContext {
    public var isCancelRequested: Bool { false }

    public func sleep(nanoseconds: UInt64) throws {
        var remaining = nanoseconds
        while remaining > 0 {
            let step = min(remaining, 100_000_000)
            usleep(UInt32(step / 1000))
            remaining -= step
            try pausePoint()
        }
        try pausePoint()
    }

    public func errorAction(isRead: Bool, errorNumber: Int32) -> BlockErrorAction { .report }
}
