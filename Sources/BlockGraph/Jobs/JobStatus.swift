// QEMU's job life cycle (qapi/job.json): the states a job passes through,
// the verbs a user may apply, and which of each is allowed from where.
// The tables are QEMU's, so a QMP client sees the same refusals.

/// A job's state, spelled as QMP spells it.
public enum JobStatus: String, CaseIterable, Sendable {
    case undefined, created, running, paused, ready, standby, waiting, pending, aborting, concluded, null

    /// The states a job may move to from this one.
    public var successors: Set<JobStatus> {
        switch self {
        case .undefined: return [.created]
        case .created: return [.running, .aborting, .null]
        case .running: return [.paused, .ready, .waiting, .aborting]
        case .paused: return [.running]
        case .ready: return [.standby, .waiting, .aborting]
        case .standby: return [.ready]
        case .waiting: return [.pending, .aborting]
        case .pending: return [.aborting, .concluded]
        case .aborting: return [.aborting, .concluded]
        case .concluded: return [.null]
        case .null: return []
        }
    }

    public func canMove(to next: JobStatus) -> Bool { successors.contains(next) }

    /// The job has finished its work (successfully or not): QEMU's job_is_completed.
    public var isCompleted: Bool {
        switch self {
        case .waiting, .pending, .aborting, .concluded, .null: return true
        default: return false
        }
    }

    /// The job is in sync and waits for `complete`: QEMU's job_is_ready.
    public var isReady: Bool { self == .ready || self == .standby }
}

/// What a user can ask of a job (QMP `job-*` and `block-job-*` commands).
public enum JobVerb: String, CaseIterable, Sendable {
    case cancel, pause, resume
    case setSpeed = "set-speed"
    case complete, finalize, dismiss

    /// The states in which the verb is accepted.
    public var allowedStates: Set<JobStatus> {
        switch self {
        case .cancel: return [.created, .running, .paused, .ready, .standby, .waiting, .pending]
        case .pause, .resume, .setSpeed: return [.created, .running, .paused, .ready, .standby]
        // Standby too (QEMU since 6.0): a paused ready job takes the request
        // and completes once resumed.
        case .complete: return [.ready, .standby]
        case .finalize: return [.pending]
        case .dismiss: return [.concluded]
        }
    }

    public func isAllowed(in status: JobStatus) -> Bool { allowedStates.contains(status) }
}

/// A verb refused in the job's current state, with QEMU's message.
public struct JobVerbRefused: Error, Equatable, CustomStringConvertible, Sendable {
    public var jobID: String
    public var status: JobStatus
    public var verb: JobVerb
    public init(jobID: String, status: JobStatus, verb: JobVerb) {
        self.jobID = jobID; self.status = status; self.verb = verb
    }
    public var description: String {
        "Job '\(jobID)' in state '\(status.rawValue)' cannot accept command verb '\(verb.rawValue)'"
    }
}
