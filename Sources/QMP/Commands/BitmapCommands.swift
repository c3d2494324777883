// block-dirty-bitmap-add, -remove, -clear, -enable, -disable and -merge:
// arguments in QEMU 7.2's schema order; the graph looks the nodes up and
// the codec changes the bitmaps, with QEMU's messages.
import BlockGraph
import QemuJSON

enum BitmapCommands {
    static let add = QMPCommand("block-dirty-bitmap-add") { input, context in
        try context.service.graph.run(try addAction(&input))
        return .object([])
    }

    static let remove = change("block-dirty-bitmap-remove")
    static let clear = change("block-dirty-bitmap-clear")
    static let enable = change("block-dirty-bitmap-enable")
    static let disable = change("block-dirty-bitmap-disable")

    private static func change(_ command: String) -> QMPCommand {
        QMPCommand(command) { input, context in
            let action = try nodeAndNameAction(command, &input)
            try context.service.refuseExportedBitmaps(action)
            try context.service.graph.run(action)
            return .object([])
        }
    }

    static let merge = QMPCommand("block-dirty-bitmap-merge") { input, context in
        let action = try mergeAction(&input)
        try context.service.refuseExportedBitmaps(action)
        try context.service.graph.run(action)
        return .object([])
    }

    // MARK: Arguments (the commands' and the transaction actions' `data`)

    /// BlockDirtyBitmapAdd; `granularity` is a uint32 (QAPI's messages for
    /// uint64 and uint32_t).
    static func addAction(_ input: inout QAPIInput) throws -> DirtyBitmapAction {
        let node = try input.string("node")
        let name = try input.string("name")
        var granularity: UInt64?
        if let value = input.take("granularity") {
            let number: UInt64
            switch value {
            case let .int(signed): number = UInt64(bitPattern: signed)
            case let .uint(unsigned): number = unsigned
            default: throw input.invalidValue("granularity", expects: "uint64")
            }
            guard number <= UInt64(UInt32.max) else { throw input.invalidValue("granularity", expects: "uint32_t") }
            granularity = number
        }
        let persistent = try input.optionalBool("persistent") ?? false
        let disabled = try input.optionalBool("disabled") ?? false
        try input.finish()
        return .add(node: node, name: name, granularity: granularity, persistent: persistent, disabled: disabled)
    }

    /// BlockDirtyBitmap, for -remove, -clear, -enable and -disable.
    static func nodeAndNameAction(_ command: String, _ input: inout QAPIInput) throws -> DirtyBitmapAction {
        let node = try input.string("node")
        let name = try input.string("name")
        try input.finish()
        switch command {
        case "block-dirty-bitmap-remove": return .remove(node: node, name: name)
        case "block-dirty-bitmap-clear": return .clear(node: node, name: name)
        case "block-dirty-bitmap-enable": return .enable(node: node, name: name)
        default: return .disable(node: node, name: name)
        }
    }

    /// BlockDirtyBitmapMerge: `bitmaps` are names of the target node's
    /// bitmaps, or {node, name}.
    static func mergeAction(_ input: inout QAPIInput) throws -> DirtyBitmapAction {
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
        return .merge(node: node, target: target, sources: sources)
    }
}

extension QMPService {
    /// Bitmaps an NBD export serves are busy: refused by every action but
    /// an addition (QEMU's busy check, made before the graph's).
    func refuseExportedBitmaps(_ action: DirtyBitmapAction) throws {
        switch action {
        case .add: return
        case let .remove(node, name), let .clear(node, name), let .enable(node, name), let .disable(node, name):
            try refuseExportedBitmap(node: node, name: name)
        case let .merge(node, target, sources):
            for source in sources { try refuseExportedBitmap(node: source.node ?? node, name: source.name) }
            try refuseExportedBitmap(node: node, name: target)
        }
    }
}
