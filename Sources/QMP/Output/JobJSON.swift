// The job layer's typed reports as QMP sends them: query-jobs' JobInfo,
// query-block-jobs' BlockJobInfo, and the job events' data.
import BlockGraph
import QemuJSON

extension JobInfo {
    var qapiJSON: JSONValue {
        var o: [(String, JSONValue)] = [
            ("id", .string(id)),
            ("type", .string(type)),
            ("status", .string(status.rawValue)),
            ("current-progress", .uint(currentProgress)),
            ("total-progress", .uint(totalProgress)),
        ]
        if let error { o.append(("error", .string(error))) }
        return .object(o)
    }
}

extension BlockJobInfo {
    var qapiJSON: JSONValue {
        var o: [(String, JSONValue)] = [
            ("type", .string(type)),
            ("device", .string(device)),
            ("len", .uint(len)),
            ("offset", .uint(offset)),
            ("busy", .bool(busy)),
            ("paused", .bool(paused)),
            ("speed", .int(speed)),
            ("io-status", .string(ioStatus.rawValue)),
            ("ready", .bool(ready)),
            ("status", .string(status.rawValue)),
            ("auto-finalize", .bool(autoFinalize)),
            ("auto-dismiss", .bool(autoDismiss)),
        ]
        if let error { o.append(("error", .string(error))) }
        return .object(o)
    }
}

extension BlockJobEventData {
    var qapiJSON: JSONValue {
        var o: [(String, JSONValue)] = [
            ("type", .string(type)),
            ("device", .string(device)),
            ("len", .uint(len)),
            ("offset", .uint(offset)),
            ("speed", .int(speed)),
        ]
        if let error { o.append(("error", .string(error))) }
        return .object(o)
    }
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
