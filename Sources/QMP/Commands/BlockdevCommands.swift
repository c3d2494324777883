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
            if flat { info.image.backingImage = nil }
            return info.qapiJSON
        })
    }
}
