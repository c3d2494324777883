// What the job layer tells the monitor: QEMU's JOB_STATUS_CHANGE and the
// BLOCK_JOB_* events (qapi/job.json, qapi/block-core.json), typed. The QMP
// layer turns them into JSON with QEMU's key order.

/// The data of BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED and BLOCK_JOB_READY.
public struct BlockJobEventData: Equatable, Sendable {
    /// The job type ("commit", ...).
    public var type: String
    /// The job ID (QEMU calls it `device` for compatibility).
    public var device: String
    /// Progress total and current, as `len` and `offset`.
    public var len: UInt64
    public var offset: UInt64
    /// The speed limit in bytes per second (0: unlimited).
    public var speed: Int64
    /// Set only in BLOCK_JOB_COMPLETED of a failed job.
    public var error: String?

    public init(type: String, device: String, len: UInt64, offset: UInt64, speed: Int64, error: String? = nil) {
        self.type = type; self.device = device; self.len = len; self.offset = offset
        self.speed = speed; self.error = error
    }
}

/// One event, delivered on the main thread in QEMU's order.
public enum JobEvent: Equatable, Sendable {
    /// JOB_STATUS_CHANGE: `data: { status, id }`.
    case statusChange(id: String, status: JobStatus)
    /// BLOCK_JOB_COMPLETED (with `error` when the job failed).
    case blockJobCompleted(BlockJobEventData)
    /// BLOCK_JOB_CANCELLED (never has `error`).
    case blockJobCancelled(BlockJobEventData)
    /// BLOCK_JOB_READY.
    case blockJobReady(BlockJobEventData)
    /// BLOCK_JOB_PENDING: `data: { type, id }`; sent when a job reaches
    /// `pending` and waits for a manual `job-finalize` (auto-finalize false).
    case blockJobPending(type: String, id: String)
    /// BLOCK_JOB_ERROR: `data: { device, operation, action }` with operation
    /// "read" or "write" and action "ignore", "report" or "stop".
    case blockJobError(device: String, operation: String, action: String)
}

/// QEMU's BlockdevOnError: what a job does when its I/O fails.
public enum BlockdevOnError: String, CaseIterable, Sendable {
    /// Fail the job (the default).
    case report
    /// Retry, as if nothing happened.
    case ignore
    /// Pause the job (user-visible, resumed with `job-resume`).
    case stop
    /// Stop on ENOSPC, report anything else.
    case enospc
    /// As `enospc` for jobs (for drives it follows the device's setting).
    case auto
}

/// QEMU's BlockErrorAction: what the job layer decided for one I/O error.
public enum BlockErrorAction: String, Sendable {
    case ignore, report, stop
}

/// QEMU's BlockDeviceIoStatus as a job reports it.
public enum BlockDeviceIoStatus: String, Sendable {
    case ok, failed, nospace
}
