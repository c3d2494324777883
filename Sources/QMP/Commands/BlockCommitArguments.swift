// block-commit's arguments (qapi/block-core.json, QEMU 7.2), read in the
// schema's order so that the first problem reported is QEMU's.
import BlockGraph

struct BlockCommitArguments: Equatable {
    var options = BlockJobOptions()
    var request: CommitRequest

    init(_ input: inout QAPIInput) throws {
        options.jobID = try input.optionalString("job-id")
        let device = try input.string("device")
        let baseNode = try input.optionalString("base-node")
        let base = try input.optionalString("base")
        let topNode = try input.optionalString("top-node")
        let top = try input.optionalString("top")
        let backingFile = try input.optionalString("backing-file")
        try options.readTrailingMembers(&input, jobKind: "commit")
        try input.finish()
        request = CommitRequest(device: device, base: base, baseNode: baseNode, top: top, topNode: topNode,
                                backingFile: backingFile)
    }
}
