// The monitor's own commands: negotiation, version, command list, quit.
import QemuJSON

enum ControlCommands {
    /// The only command before negotiation; after it, the same name refuses.
    static let negotiation = QMPCommand("qmp_capabilities") { input, context in
        let enable = try capabilityList(&input, "enable")
        try input.finish()
        context.session.negotiate(enableOOB: enable.contains("oob"))
        return .object([])
    }

    /// Its arguments are still read (and refused) first, as QEMU
    /// unmarshals them before the command body says no.
    static let capabilitiesAfterNegotiation = QMPCommand("qmp_capabilities") { input, _ in
        _ = try capabilityList(&input, "enable")
        try input.finish()
        throw QMPError(.commandNotFound, "Capabilities negotiation is already complete, command ignored")
    }

    static let queryVersion = QMPCommand("query-version") { input, context in
        try input.finish()
        return context.service.version.json
    }

    static let queryCommands = QMPCommand("query-commands") { input, context in
        try input.finish()
        return .array(context.service.commandNames.map { .object([("name", .string($0))]) })
    }

    /// Replies first, then the SHUTDOWN event and the shutdown itself.
    static let quit = QMPCommand("quit") { input, context in
        try input.finish()
        let service = context.service
        service.beginShutdown()
        context.doAfterReply { service.shutDown(reason: .hostQMPQuit) }
        return .object([])
    }

    /// `enable`: an optional list of QMPCapability; QEMU 7.2 names a bad
    /// element 'null' in its message (the enum is visited without a name).
    private static func capabilityList(_ input: inout QAPIInput, _ name: String) throws -> [String] {
        guard let value = input.take(name) else { return [] }
        guard case let .array(items) = value else {
            throw input.wrongType(name, expected: "array")
        }
        return try items.enumerated().map { index, item in
            guard case let .string(text) = item else {
                throw input.wrongType("\(name)[\(index)]", expected: "string")
            }
            guard text == "oob" else {
                throw QMPError.generic("Parameter 'null' does not accept value '\(text)'")
            }
            return text
        }
    }
}
