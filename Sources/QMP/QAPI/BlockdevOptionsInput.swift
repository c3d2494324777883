// QAPI's BlockdevOptions (qapi/block-core.json), the part QcowKit implements,
// read from blockdev-add's arguments or -blockdev's keyval tree: a union on
// `driver`, base members first, then the driver's own, each visited in the
// schema's order so the first problem reported is QEMU's.
//   file:  filename
//   qcow2: file (BlockdevRef), backing (BlockdevRefOrNull)
//   raw:   file (BlockdevRef)
import BlockGraph
import Qcow2
import QemuJSON

enum BlockdevOptionsInput {
    /// The drivers QcowKit has; any other is refused as QAPI refuses an
    /// unknown enum value.
    static let drivers = ["file", "qcow2", "raw"]

    static func decode(_ input: inout QAPIInput) throws -> BlockdevOptions {
        guard let driver = try input.optionalEnum("driver", drivers) else { throw input.missing("driver") }
        var options = BlockdevOptions(driver: driver)
        options.nodeName = try input.optionalString("node-name")
        options.readOnly = try input.optionalBool("read-only")
        options.forceShare = try input.optionalBool("force-share")
        switch driver {
        case "file":
            options.filename = try input.string("filename")
            if let mode = try input.optionalEnum("locking", FileLockingMode.allCases.map(\.rawValue)) {
                options.locking = FileLockingMode(rawValue: mode)
            }
        case "qcow2":
            options.file = try blockdevRef(&input, "file")
            options.backing = try backing(&input)
        default:
            options.file = try blockdevRef(&input, "file")
        }
        try input.finish()
        return options
    }

    /// BlockdevRef: nested options, or a node's name.
    private static func blockdevRef(_ input: inout QAPIInput, _ name: String) throws -> BlockdevRef {
        guard let value = input.take(name) else { throw input.missing(name) }
        switch value {
        case let .string(reference):
            return .node(reference)
        case let .object(members):
            var nested = QAPIInput(members, mode: input.mode, prefix: input.fullName(name) + ".")
            return .options(try decode(&nested))
        default:
            throw input.wrongType(name, expected: input.mode == .keyval ? "string" : "BlockdevRef")
        }
    }

    /// BlockdevRefOrNull: absent (open what the header names), null (no
    /// backing), a node's name, or nested options for the backing node.
    /// In keyval, where there is no null, `backing=` and `backing=null`
    /// both mean none.
    private static func backing(_ input: inout QAPIInput) throws -> BackingChoice {
        guard let value = input.take("backing") else { return .fromImage(nil) }
        switch (input.mode, value) {
        case (.json, .null), (.json, .string("")):
            // "" is QEMU's deprecated spelling of null.
            return .none
        case let (.keyval, .string(reference)) where reference.isEmpty || reference == "null":
            return .none
        case let (_, .string(reference)):
            return .node(reference)
        case let (_, .object(members)):
            var nested = QAPIInput(members, mode: input.mode, prefix: input.fullName("backing") + ".")
            return .fromImage(try decode(&nested))
        default:
            throw input.wrongType("backing", expected: input.mode == .keyval ? "string" : "BlockdevRefOrNull")
        }
    }
}
