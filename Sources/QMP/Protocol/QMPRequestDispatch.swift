// From a request to a command, with QEMU 7.2's checks in QEMU's order
// (qmp_dispatch and the monitor's negotiation mode): the request's shape,
// the command's existence in the current mode, OOB, then the command itself.
import QemuJSON

/// A QMP command: its name and its body. The body takes its arguments from
/// the input (in schema order) and finishes it, so unknown members are refused.
struct QMPCommand: Sendable {
    let name: String
    let run: @Sendable (inout QAPIInput, QMPCommandContext) throws -> JSONValue

    init(_ name: String, _ run: @escaping @Sendable (inout QAPIInput, QMPCommandContext) throws -> JSONValue) {
        self.name = name
        self.run = run
    }
}

enum QMPRequestDispatch {
    /// Runs `request`. Before negotiation only `negotiation` exists; after it,
    /// `commands` (in which qmp_capabilities refuses a second negotiation).
    static func dispatch(_ request: JSONValue, negotiated: Bool, oobEnabled: Bool,
                         negotiation: QMPCommand, commands: [String: QMPCommand],
                         context: QMPCommandContext) -> Result<JSONValue, QMPError> {
        guard case let .object(members) = request else {
            return .failure(.generic("QMP input must be a JSON object"))
        }
        var execKey: String?
        var commandName = ""
        for (name, value) in QDictOrder.ordered(members) {
            if name == "execute" || (name == "exec-oob" && oobEnabled) {
                guard case let .string(text) = value else {
                    return .failure(.generic("QMP input member '\(name)' must be a string"))
                }
                if let execKey {
                    return .failure(.generic("QMP input member '\(name)' clashes with '\(execKey)'"))
                }
                execKey = name
                commandName = text
            } else if name == "arguments" {
                guard case .object = value else {
                    return .failure(.generic("QMP input member 'arguments' must be an object"))
                }
            } else if name != "id" {
                return .failure(.generic("QMP input member '\(name)' is unexpected"))
            }
        }
        guard let execKey else { return .failure(.generic("QMP input lacks member 'execute'")) }

        let command = negotiated ? commands[commandName] : (commandName == negotiation.name ? negotiation : nil)
        guard let command else {
            if !negotiated {
                return .failure(QMPError(.commandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'"))
            }
            return .failure(QMPError(.commandNotFound, "The command \(commandName) has not been found"))
        }
        // No command of ours may run out of band (QEMU allows it only for a
        // few migration commands).
        if execKey == "exec-oob" {
            return .failure(.generic("The command \(commandName) does not support OOB"))
        }
        var input = QAPIInput(arguments: request["arguments"])
        do {
            return .success(try command.run(&input, context))
        } catch {
            return .failure(QMPError(reporting: error))
        }
    }
}
