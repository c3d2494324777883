// The job layer's typed reports as QMP sends them: query-jobs' JobInfo,
// query-block-jobs' BlockJobInfo, and the job events' data.
import BlockGraph
import QemuJSON

extension JobInfo {
    var qapiJSON: JSONValue {
        qapiObject([
            ("id", .string(id)),
            ("type", .string(type)),
            ("status", .string(status.rawValue)),
            ("current-progress", .uint(currentProgress)),
            ("total-progress", .uint(totalProgress)),
        ], error: error)
    }
}

extension BlockJobInfo {
    var qapiJSON: JSONValue {
        qapiObject(blockJobMembers(type: type, device: device, len: len, offset: offset) + [
            ("busy", .bool(busy)),
            ("paused", .bool(paused)),
            ("speed", .int(speed)),
            ("io-status", .string(ioStatus.rawValue)),
            ("ready", .bool(ready)),
            ("status", .string(status.rawValue)),
            ("auto-finalize", .bool(autoFinalize)),
            ("auto-dismiss", .bool(autoDismiss)),
        ], error: error)
    }
}

extension BlockJobEventData {
    /// BLOCK_JOB_COMPLETED, _CANCELLED and _READY: BlockJobInfo's first
    /// members and speed.
    var qapiJSON: JSONValue {
        qapiObject(blockJobMembers(type: type, device: device, len: len, offset: offset) + [
            ("speed", .int(speed)),
        ], error: error)
    }
}

/// What BlockJobInfo and the block job events begin with.
private func blockJobMembers(type: String, device: String, len: UInt64, offset: UInt64) -> [(String, JSONValue)] {
    [("type", .string(type)), ("device", .string(device)), ("len", .uint(len)), ("offset", .uint(offset))]
}

/// `members`, then the optional `error` last, as the schema has it.
private func qapiObject(_ members: [(String, JSONValue)], error: String?) -> JSONValue {
    .object(members + (error.map { [("error", JSONValue.string($0))] } ?? []))
}

extension JobEvent {
    /// The event's name and data.
    var qmpEvent: (name: String, data: JSONValue) {
        switch self {
        case let .statusChange(id, status):
            return ("JOB_STATUS_CHANGE", .object([("id", .string(id)), ("status", .string(status.rawValue))]))
        case let .blockJobCompleted(data): return ("BLOCK_JOB_COMPLETED", data.qapiJSON)
        case let .blockJobCancelled(data): return ("BLOCK_JOB_CANCELLED", data.qapiJSON)
        case let .blockJobReady(data): return ("BLOCK_JOB_READY", data.qapiJSON)
        case let .blockJobPending(type, id):
            return ("BLOCK_JOB_PENDING", .object([("type", .string(type)), ("id", .string(id))]))
        case let .blockJobError(device, operation, action):
            return ("BLOCK_JOB_ERROR", .object([
                ("device", .string(device)), ("operation", .string(operation)), ("action", .string(action)),
            ]))
        }
    }
}
