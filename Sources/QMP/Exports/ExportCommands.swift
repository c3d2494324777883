// The NBD server and block export commands, and the objects they use:
// nbd-server-start, nbd-server-stop, block-export-add, block-export-del,
// query-block-exports, object-add, object-del.
import QemuJSON

enum ExportCommands {
    static let nbdServerStart = QMPCommand("nbd-server-start") { input, context in
        let options = try NBDServerInput.start(&input, flatAddress: false)
        try context.service.startNBDServer(options)
        return .object([])
    }

    static let nbdServerStop = QMPCommand("nbd-server-stop") { input, context in
        try input.finish()
        try context.service.stopNBDServer()
        return .object([])
    }

    static let blockExportAdd = QMPCommand("block-export-add") { input, context in
        let options = try NBDServerInput.export(&input)
        try context.service.addBlockExport(options)
        return .object([])
    }

    static let blockExportDel = QMPCommand("block-export-del") { input, context in
        let id = try input.string("id")
        let mode = try input.optionalEnum("mode", ["safe", "hard"])
        try input.finish()
        try context.service.deleteBlockExport(id: id, hard: mode == "hard")
        return .object([])
    }

    static let queryBlockExports = QMPCommand("query-block-exports") { input, context in
        try input.finish()
        return .array(context.service.blockExportsJSON)
    }

    static let objectAdd = QMPCommand("object-add") { input, context in
        try context.service.objects.add(try UserObjectOptionsInput.decode(&input))
        return .object([])
    }

    static let objectDel = QMPCommand("object-del") { input, context in
        let id = try input.string("id")
        try input.finish()
        try context.service.objects.delete(id: id)
        return .object([])
    }
}
