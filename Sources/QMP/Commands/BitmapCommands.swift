// block-dirty-bitmap-add, -remove, -clear, -enable, -disable and -merge:
// arguments in QEMU 7.2's schema order; the graph looks the nodes up and
// the codec changes the bitmaps, with QEMU's messages.
import BlockGraph
import QemuJSON

enum BitmapCommands {
    static let add = QMPCommand("block-dirty-bitmap-add") { input, context in
        let node = try input.string("node")
        let name = try input.string("name")
        let granularity = try input.optionalInt64("granularity")
        let persistent = try input.optionalBool("persistent") ?? false
        let disabled = try input.optionalBool("disabled") ?? false
        try input.finish()
        if let granularity, granularity < 0 || granularity > Int64(UInt32.max) {
            throw input.invalidValue("granularity", expects: "uint32_t")
        }
        try context.service.graph.addDirtyBitmap(node: node, name: name, granularity: granularity.map { UInt64($0) },
                                                 persistent: persistent, disabled: disabled)
        return .object([])
    }

    static let remove = change("block-dirty-bitmap-remove", .remove)
    static let clear = change("block-dirty-bitmap-clear", .clear)
    static let enable = change("block-dirty-bitmap-enable", .enable)
    static let disable = change("block-dirty-bitmap-disable", .disable)

    private static func change(_ command: String, _ change: DirtyBitmapChange) -> QMPCommand {
        QMPCommand(command) { input, context in
            let node = try input.string("node")
            let name = try input.string("name")
            try input.finish()
            try context.service.refuseExportedBitmap(node: node, name: name)
            try context.service.graph.changeDirtyBitmap(node: node, name: name, change)
            return .object([])
        }
    }

    /// `bitmaps`: names of the target node's bitmaps, or {node, name}.
    static let merge = QMPCommand("block-dirty-bitmap-merge") { input, context in
        let node = try input.string("node")
        let target = try input.string("target")
        guard let list = input.take("bitmaps") else { throw input.missing("bitmaps") }
        guard case let .array(items) = list else { throw input.wrongType("bitmaps", expected: "array") }
        var sources: [DirtyBitmapSource] = []
        for item in items {
            switch item {
            case let .string(name):
                sources.append(DirtyBitmapSource(node: nil, name: name))
            case let .object(pairs):
                var member = QAPIInput(pairs, mode: input.mode, prefix: input.fullName("bitmaps") + "[].")
                let sourceNode = try member.string("node")
                let name = try member.string("name")
                try member.finish()
                sources.append(DirtyBitmapSource(node: sourceNode, name: name))
            default:
                throw input.wrongType("bitmaps", expected: "BlockDirtyBitmapOrStr")
            }
        }
        try input.finish()
        for source in sources { try context.service.refuseExportedBitmap(node: source.node ?? node, name: source.name) }
        try context.service.refuseExportedBitmap(node: node, name: target)
        try context.service.graph.mergeDirtyBitmaps(node: node, target: target, sources: sources)
        return .object([])
    }
}
