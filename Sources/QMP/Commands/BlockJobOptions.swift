// The members every block-job command shares (block-commit, block-stream):
// read at their place in each command's schema order, and the start of the
// job they describe.
import BlockGraph

struct BlockJobOptions: Equatable {
    var jobID: String?
    var speed: Int64 = 0
    var onError: BlockdevOnError = .report
    var autoFinalize = true
    var autoDismiss = true

    /// Reads the members both schemas list after their own ones: speed,
    /// on-error, filter-node-name (refused: QcowKit's jobs insert no filter
    /// node for it to name), auto-finalize, auto-dismiss.
    mutating func readTrailingMembers(_ input: inout QAPIInput, jobKind: String) throws {
        speed = try input.optionalInt64("speed") ?? 0
        let onErrorName = try input.optionalEnum("on-error", BlockdevOnError.allCases.map(\.rawValue))
        onError = onErrorName.flatMap(BlockdevOnError.init(rawValue:)) ?? .report
        if try input.optionalString("filter-node-name") != nil {
            throw QMPError.generic("Parameter 'filter-node-name' is not supported: QcowKit's \(jobKind) has no filter node")
        }
        autoFinalize = try input.optionalBool("auto-finalize") ?? true
        autoDismiss = try input.optionalBool("auto-dismiss") ?? true
    }
}

extension QMPService {
    /// Starts `driver` as a block job. Without job-id QEMU names the job after
    /// the device's block backend (a -drive id); a node that has none gives
    /// the empty, invalid id.
    func startBlockJob(_ driver: BlockJobDriver, device: String, options: BlockJobOptions) throws {
        let jobID = options.jobID ?? driveID(of: device) ?? ""
        try jobs.startBlockJob(id: jobID, driver: driver, speed: options.speed,
                               autoFinalize: options.autoFinalize, autoDismiss: options.autoDismiss,
                               onError: options.onError)
    }

    /// The -drive id whose root node `device` names (by id or node name).
    func driveID(of device: String) -> String? {
        guard let node = try? graph.lookup(device: device) else { return nil }
        return graph.driveList.first { $0.node === node }?.id
    }
}
