// `transaction` (qapi/transaction.json, qmp_transaction in QEMU 7.2's
// blockdev.c) with the bitmap actions and `abort`: every action's
// arguments decoded first (QAPI's messages, with "actions[N]." paths),
// then each prepared in order; the first failure undoes those before it,
// newest first, and is the reply. The other action kinds QEMU knows
// (snapshots, backups) are refused by name.
import BlockGraph
import QemuJSON

enum TransactionCommand {
    /// TransactionActionKind, in the schema's order.
    static let kinds = [
        "abort", "block-dirty-bitmap-add", "block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
        "block-dirty-bitmap-enable", "block-dirty-bitmap-disable", "block-dirty-bitmap-merge",
        "blockdev-backup", "blockdev-snapshot", "blockdev-snapshot-internal-sync", "blockdev-snapshot-sync",
        "drive-backup",
    ]

    enum Action {
        case abort
        case bitmap(kind: String, DirtyBitmapAction)
    }

    static let command = QMPCommand("transaction") { input, context in
        guard let list = input.take("actions") else { throw input.missing("actions") }
        guard case let .array(items) = list else { throw input.wrongType("actions", expected: "array") }
        var actions: [Action] = []
        for (index, item) in items.enumerated() {
            let path = input.fullName("actions") + "[\(index)]"
            guard case let .object(pairs) = item else {
                throw QMPError.generic("Invalid parameter type for '\(path)', expected: object")
            }
            var member = QAPIInput(pairs, mode: input.mode, prefix: path + ".")
            actions.append(try decode(&member))
        }
        var grouped = false
        if var properties = try input.optionalObject("properties", typeName: "object") {
            // An enum's error names the member alone, as QEMU's visitor does.
            if let mode = properties.take("completion-mode") {
                guard case let .string(text) = mode else {
                    throw properties.wrongType("completion-mode", expected: "string")
                }
                guard text == "individual" || text == "grouped" else {
                    throw QMPError.generic("Parameter 'completion-mode' does not accept value '\(text)'")
                }
                grouped = text == "grouped"
            }
            try properties.finish()
        }
        try input.finish()

        let transaction = DirtyBitmapTransaction()
        do {
            for action in actions {
                switch action {
                case .abort:
                    throw QMPError.generic("Transaction aborted using Abort action")
                case let .bitmap(kind, bitmapAction):
                    if grouped {
                        throw QMPError.generic(
                            "Action '\(kind)' does not support Transaction property completion-mode = grouped")
                    }
                    try context.service.refuseExportedBitmaps(bitmapAction)
                    try context.service.graph.prepare(bitmapAction, in: transaction)
                }
            }
        } catch {
            transaction.abort()
            throw error
        }
        transaction.commit()
        return .object([])
    }

    /// One TransactionAction: `type`, then `data` as that kind's arguments.
    private static func decode(_ member: inout QAPIInput) throws -> Action {
        guard let type = member.take("type") else { throw member.missing("type") }
        guard case let .string(kind) = type else { throw member.wrongType("type", expected: "string") }
        guard kinds.contains(kind) else {
            throw QMPError.generic("Parameter 'type' does not accept value '\(kind)'")
        }
        guard var data = try member.optionalObject("data", typeName: "object") else { throw member.missing("data") }
        let action: Action
        switch kind {
        case "abort":
            try data.finish()
            action = .abort
        case "block-dirty-bitmap-add":
            action = .bitmap(kind: kind, try BitmapCommands.addAction(&data))
        case "block-dirty-bitmap-merge":
            action = .bitmap(kind: kind, try BitmapCommands.mergeAction(&data))
        case "block-dirty-bitmap-remove", "block-dirty-bitmap-clear", "block-dirty-bitmap-enable",
             "block-dirty-bitmap-disable":
            action = .bitmap(kind: kind, try BitmapCommands.nodeAndNameAction(kind, &data))
        default:
            throw QMPError.generic("Transaction action '\(kind)' is not supported by qcowkit")
        }
        try member.finish()
        return action
    }
}
