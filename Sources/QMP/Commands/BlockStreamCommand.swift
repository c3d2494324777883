// block-stream: copies what a node reads from below into it, down to a base
// (or the whole chain), then drops the layers in between. Arguments in QEMU
// 7.2's schema order; the graph checks them, the job layer runs the copy.
import BlockGraph
import QemuJSON

struct BlockStreamArguments: Equatable {
    var jobID: String?
    var request: StreamRequest
    var speed: Int64
    var onError: BlockdevOnError
    var autoFinalize: Bool
    var autoDismiss: Bool

    init(_ input: inout QAPIInput) throws {
        jobID = try input.optionalString("job-id")
        let device = try input.string("device")
        let base = try input.optionalString("base")
        let baseNode = try input.optionalString("base-node")
        let backingFile = try input.optionalString("backing-file")
        // `bottom` and `filter-node-name` name nodes of QEMU's filter-based
        // graph, which QcowKit's stream does not build.
        if try input.optionalString("bottom") != nil {
            throw QMPError.generic("Parameter 'bottom' is not supported: use 'base' or 'base-node'")
        }
        speed = try input.optionalInt64("speed") ?? 0
        let onErrorName = try input.optionalEnum("on-error", BlockdevOnError.allCases.map(\.rawValue))
        onError = onErrorName.flatMap(BlockdevOnError.init(rawValue:)) ?? .report
        if try input.optionalString("filter-node-name") != nil {
            throw QMPError.generic("Parameter 'filter-node-name' is not supported: QcowKit's stream has no filter node")
        }
        autoFinalize = try input.optionalBool("auto-finalize") ?? true
        autoDismiss = try input.optionalBool("auto-dismiss") ?? true
        try input.finish()
        request = StreamRequest(device: device, base: base, baseNode: baseNode, backingFile: backingFile)
    }
}

enum BlockStreamCommand {
    static let command = QMPCommand("block-stream") { input, context in
        let arguments = try BlockStreamArguments(&input)
        let service = context.service
        let driver = try service.graph.makeStreamDriver(arguments.request)
        let jobID = arguments.jobID ?? service.driveID(of: arguments.request.device) ?? ""
        try service.jobs.startBlockJob(id: jobID, driver: driver, speed: arguments.speed,
                                       autoFinalize: arguments.autoFinalize, autoDismiss: arguments.autoDismiss,
                                       onError: arguments.onError)
        return .object([])
    }
}
