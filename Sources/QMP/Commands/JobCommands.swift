// The job verbs in both spellings (job-* by job id; block-job-* by "device",
// which is the job id too) and the two job queries. The two families word a
// missing job differently, as QEMU does.
import BlockGraph
import QemuJSON

enum JobCommands {
    static let queryJobs = QMPCommand("query-jobs") { input, context in
        try input.finish()
        return .array(context.service.jobs.queryJobs().map(\.qapiJSON))
    }

    static let queryBlockJobs = QMPCommand("query-block-jobs") { input, context in
        try input.finish()
        return .array(context.service.jobs.queryBlockJobs().map(\.qapiJSON))
    }

    // MARK: job-*

    static let cancel = jobVerb("job-cancel") { try $0.cancel(id: $1, force: true) }
    static let pause = jobVerb("job-pause") { try $0.pause(id: $1) }
    static let resume = jobVerb("job-resume") { try $0.resume(id: $1) }
    static let complete = jobVerb("job-complete") { try $0.complete(id: $1) }
    static let finalize = jobVerb("job-finalize") { try $0.finalize(id: $1) }
    static let dismiss = jobVerb("job-dismiss") { try $0.dismiss(id: $1) }

    private static func jobVerb(_ name: String, _ verb: @escaping @Sendable (JobManager, String) throws -> Void) -> QMPCommand {
        QMPCommand(name) { input, context in
            let id = try input.string("id")
            try input.finish()
            try verb(context.service.jobs, id)
            return .object([])
        }
    }

    // MARK: block-job-*

    static let blockJobCancel = QMPCommand("block-job-cancel") { input, context in
        let device = try input.string("device")
        let force = try input.optionalBool("force") ?? false
        try input.finish()
        try blockJobFamily { try context.service.jobs.blockJobCancel(device: device, force: force) }
        return .object([])
    }

    static let blockJobSetSpeed = QMPCommand("block-job-set-speed") { input, context in
        let device = try input.string("device")
        let speed = try input.int64("speed")
        try input.finish()
        try blockJobFamily { try context.service.jobs.setSpeed(id: device, speed: speed) }
        return .object([])
    }

    static let blockJobPause = blockJobVerb("block-job-pause", member: "device") { try $0.pause(id: $1) }
    static let blockJobResume = blockJobVerb("block-job-resume", member: "device") { try $0.resume(id: $1) }
    static let blockJobComplete = blockJobVerb("block-job-complete", member: "device") { try $0.complete(id: $1) }
    static let blockJobFinalize = blockJobVerb("block-job-finalize", member: "id") { try $0.finalize(id: $1) }
    static let blockJobDismiss = blockJobVerb("block-job-dismiss", member: "id") { try $0.dismiss(id: $1) }

    private static func blockJobVerb(_ name: String, member: String,
                                     _ verb: @escaping @Sendable (JobManager, String) throws -> Void) -> QMPCommand {
        QMPCommand(name) { input, context in
            let id = try input.string(member)
            try input.finish()
            try blockJobFamily { try verb(context.service.jobs, id) }
            return .object([])
        }
    }

    /// block-job-* report a missing job as DeviceNotActive, naming it.
    private static func blockJobFamily(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as JobError where error.isNotFound {
            throw QMPError(.deviceNotActive, error.blockJobMessage)
        }
    }
}
