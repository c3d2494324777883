// block-stream: copies what a node reads from below into it, down to a base
// (or the whole chain), then drops the layers in between. Arguments in QEMU
// 7.2's schema order; the graph checks them, the job layer runs the copy.
import BlockGraph
import QemuJSON

struct BlockStreamArguments: Equatable {
    var options = BlockJobOptions()
    var request: StreamRequest

    init(_ input: inout QAPIInput) throws {
        options.jobID = try input.optionalString("job-id")
        let device = try input.string("device")
        let base = try input.optionalString("base")
        let baseNode = try input.optionalString("base-node")
        let backingFile = try input.optionalString("backing-file")
        // `bottom` names a node of QEMU's filter-based graph, which QcowKit's
        // stream does not build.
        if try input.optionalString("bottom") != nil {
            throw QMPError.generic("Parameter 'bottom' is not supported: use 'base' or 'base-node'")
        }
        try options.readTrailingMembers(&input, jobKind: "stream")
        try input.finish()
        request = StreamRequest(device: device, base: base, baseNode: baseNode, backingFile: backingFile)
    }
}

enum BlockStreamCommand {
    static let command = QMPCommand("block-stream") { input, context in
        let arguments = try BlockStreamArguments(&input)
        let service = context.service
        let driver = try service.graph.makeStreamDriver(arguments.request)
        try service.startBlockJob(driver, device: arguments.request.device, options: arguments.options)
        return .object([])
    }
}
