// Nodes: blockdev-add, blockdev-del, query-named-block-nodes.
import BlockGraph
import QemuJSON

enum BlockdevCommands {
    static let add = QMPCommand("blockdev-add") { input, context in
        let options = try BlockdevOptionsInput.decode(&input)
        try context.service.graph.addBlockdev(options)
        return .object([])
    }

    static let delete = QMPCommand("blockdev-del") { input, context in
        let nodeName = try input.string("node-name")
        try input.finish()
        try context.service.graph.deleteBlockdev(nodeName: nodeName)
        return .object([])
    }

    /// Newest node first; `flat` leaves out the backing images' details.
    static let queryNamedBlockNodes = QMPCommand("query-named-block-nodes") { input, context in
        let flat = try input.optionalBool("flat") ?? false
        try input.finish()
        let graph = context.service.graph
        return .array(try graph.namedNodes.map { node in
            var info = try graph.deviceInfo(node)
            if flat {
                // QEMU 7.2 counts the depth while it gathers the chain,
                // which flat output skips: 0.
                info.image.backingImage = nil
                info.backingFileDepth = 0
            }
            return info.qapiJSON
        })
    }

    /// query-block: QEMU lists the block backends that have a name. Nodes
    /// added with -blockdev or blockdev-add have none (qemu-storage-daemon
    /// 7.2 answers []); each -drive is one, shown as qemu-system-x86_64 7.2
    /// shows an if=none drive with no guest device: removable, not locked,
    /// type "unknown", the node's BlockDeviceInfo (full backing chain,
    /// dirty-bitmaps) as `inserted`.
    static let queryBlock = QMPCommand("query-block") { input, context in
        try input.finish()
        let graph = context.service.graph
        return .array(try graph.driveList.compactMap { drive in
            guard let id = drive.id else { return nil }
            return .object([
                ("device", .string(id)),
                ("type", .string("unknown")),
                ("removable", .bool(true)),
                ("locked", .bool(false)),
                ("inserted", try graph.deviceInfo(drive.node).qapiJSON),
            ])
        })
    }
}
