// block-commit: the graph checks the request and prepares the work, the job
// layer runs it. Its `created` and `running` events go out before the reply,
// as QEMU sends them.
import BlockGraph
import QemuJSON

enum BlockCommitCommand {
    static let command = QMPCommand("block-commit") { input, context in
        let arguments = try BlockCommitArguments(&input)
        let service = context.service
        let driver = try service.graph.makeCommitDriver(arguments.request)
        // Without job-id QEMU names the job after the device's block backend
        // (a -drive id); a node that has none gives the empty, invalid id.
        let jobID = arguments.jobID ?? service.driveID(of: arguments.request.device) ?? ""
        try service.jobs.startBlockJob(id: jobID, driver: driver, speed: arguments.speed,
                                       autoFinalize: arguments.autoFinalize, autoDismiss: arguments.autoDismiss,
                                       onError: arguments.onError)
        return .object([])
    }
}

extension QMPService {
    /// The -drive id whose root node `device` names (by id or node name).
    func driveID(of device: String) -> String? {
        guard let node = try? graph.lookup(device: device) else { return nil }
        return graph.driveList.first { $0.node === node }?.id
    }
}
