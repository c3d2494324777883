// The typed data of query-jobs (JobInfo, qapi/job.json) and query-block-jobs
// (BlockJobInfo, qapi/block-core.json). The QMP layer prints them with
// QEMU's key order.

/// One entry of query-jobs.
public struct JobInfo: Equatable, Sendable {
    public var id: String
    public var type: String
    public var status: JobStatus
    public var currentProgress: UInt64
    public var totalProgress: UInt64
    /// Set once the job failed or was cancelled ("Operation canceled").
    public var error: String?

    public init(id: String, type: String, status: JobStatus, currentProgress: UInt64, totalProgress: UInt64,
                error: String?) {
        self.id = id; self.type = type; self.status = status
        self.currentProgress = currentProgress; self.totalProgress = totalProgress; self.error = error
    }
}

/// One entry of query-block-jobs.
public struct BlockJobInfo: Equatable, Sendable {
    public var type: String
    public var device: String
    public var len: UInt64
    public var offset: UInt64
    /// The job's worker is doing something (not sleeping or paused).
    public var busy: Bool
    /// A pause was requested (QEMU: pause_count > 0), reached or not.
    public var paused: Bool
    public var speed: Int64
    public var ioStatus: BlockDeviceIoStatus
    public var ready: Bool
    public var status: JobStatus
    public var autoFinalize: Bool
    public var autoDismiss: Bool
    public var error: String?

    public init(type: String, device: String, len: UInt64, offset: UInt64, busy: Bool, paused: Bool, speed: Int64,
                ioStatus: BlockDeviceIoStatus, ready: Bool, status: JobStatus, autoFinalize: Bool,
                autoDismiss: Bool, error: String?) {
        self.type = type; self.device = device; self.len = len; self.offset = offset; self.busy = busy
        self.paused = paused; self.speed = speed; self.ioStatus = ioStatus; self.ready = ready
        self.status = status; self.autoFinalize = autoFinalize; self.autoDismiss = autoDismiss; self.error = error
    }
}
