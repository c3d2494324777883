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
        try service.startBlockJob(driver, device: arguments.request.device, options: arguments.options)
        return .object([])
    }
}
