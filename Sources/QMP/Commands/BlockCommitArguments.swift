// block-commit's arguments (qapi/block-core.json, QEMU 7.2), read in the
// schema's order so that the first problem reported is QEMU's.
import BlockGraph

struct BlockCommitArguments: Equatable {
    var jobID: String?
    var request: CommitRequest
    var speed: Int64
    var onError: BlockdevOnError
    var autoFinalize: Bool
    var autoDismiss: Bool

    init(_ input: inout QAPIInput) throws {
        jobID = try input.optionalString("job-id")
        let device = try input.string("device")
        let baseNode = try input.optionalString("base-node")
        let base = try input.optionalString("base")
        let topNode = try input.optionalString("top-node")
        let top = try input.optionalString("top")
        let backingFile = try input.optionalString("backing-file")
        speed = try input.optionalInt64("speed") ?? 0
        let onErrorName = try input.optionalEnum("on-error", BlockdevOnError.allCases.map(\.rawValue))
        onError = onErrorName.flatMap(BlockdevOnError.init(rawValue:)) ?? .report
        // QEMU names the commit filter node with it; QcowKit's commit has no
        // filter node to name.
        if try input.optionalString("filter-node-name") != nil {
            throw QMPError.generic("Parameter 'filter-node-name' is not supported: QcowKit's commit has no filter node")
        }
        autoFinalize = try input.optionalBool("auto-finalize") ?? true
        autoDismiss = try input.optionalBool("auto-dismiss") ?? true
        try input.finish()
        request = CommitRequest(device: device, base: base, baseNode: baseNode, top: top, topNode: topNode,
                                backingFile: backingFile)
    }
}
