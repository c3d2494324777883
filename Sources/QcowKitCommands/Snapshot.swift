// `qcowkit snapshot`: qemu-img 7.2's snapshot verb. -l lists the internal
// snapshots (nothing at all when there are none), -c creates one, -a applies
// one (by ID, else by name), -d deletes the first with that name; with no
// action the image is only opened for writing and closed, as qemu-img does.
// Messages and exit status (0, or 1 on any failure) are qemu-img's. Beyond
// 7.2, QEMU 10's spellings are taken too: --list, --create, --apply,
// --delete, -f/--format, --quiet, --force-share.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import Qcow2

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "List, create, apply or delete the internal snapshots of a qcow2 image.")

    @Flag(name: [.customShort("l"), .customLong("list")], help: "List the snapshots.")
    var list: Int

    @Option(name: [.customShort("c"), .customLong("create")], help: "Create a snapshot named NAME.")
    var create: [String] = []

    @Option(name: [.customShort("a"), .customLong("apply")], help: "Revert the image to snapshot NAME (an ID or a name).")
    var apply: [String] = []

    @Option(name: [.customShort("d"), .customLong("delete")], help: "Delete the snapshot named NAME.")
    var delete: [String] = []

    @Option(name: [.customShort("f"), .customLong("format")], help: "The image format (qcow2 or raw); probed when omitted.")
    var format: String?

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Quiet: print nothing but errors.")
    var quiet = false

    @OptionGroup var sharing: ForceShareOption

    @Flag(name: .customLong("image-opts"), help: "FILE is QEMU's block options (driver=qcow2,file.filename=PATH,...).")
    var imageOpts = false

    @OptionGroup var objectOptions: ObjectOptions

    @Argument(help: "The image file.")
    var files: [String] = []

    enum Action: Equatable {
        case none, list, create(String), apply(String), delete(String)
    }

    func action() throws -> Action {
        let actions = [Action](repeating: .list, count: list) + create.map(Action.create)
            + apply.map(Action.apply) + delete.map(Action.delete)
        guard actions.count <= 1 else {
            throw CommandFailure("Cannot mix '-l', '-a', '-c', '-d'\nTry '\(ProgramName.current) --help' for more information")
        }
        return actions.first ?? .none
    }

    func run() throws {
        let action = try action()
        guard files.count == 1, let path = files.first else {
            throw CommandFailure("Expecting one image file name\nTry '\(ProgramName.current) --help' for more information")
        }
        let writable = action != .list
        let image = try ReadCommands.openChain(ImageArgument(path, format: format, imageOpts: imageOpts), writable: writable,
                                               access: writable ? VerbAccess.write : VerbAccess.read,
                                               locking: sharing.locking)
        defer { try? image.close() }
        let qcow2 = image as? Qcow2Image

        switch action {
        case .none:
            break
        case .list:
            // Formats without snapshots list nothing, as does an empty table.
            let snapshots = try qcow2?.listSnapshots() ?? []
            if !snapshots.isEmpty { Terminal.print(SnapshotListing.table(snapshots), terminator: "") }
        case let .create(name):
            do {
                guard let qcow2 else { throw SnapshotError.notSupported }
                try qcow2.createSnapshot(name: name)
            } catch {
                let code = SnapshotError.errnoValue(of: error)
                throw CommandFailure("Could not create snapshot '\(name)': -\(code) (\(String(cString: strerror(code))))")
            }
        case let .apply(name):
            do {
                guard let qcow2 else {
                    // QEMU tries the raw driver's file instead, reopening the
                    // raw driver afterwards, which warns about probing again.
                    if format == nil { Terminal.printError(ProbedRawWarning.text(path: path)) }
                    throw SnapshotError.notSupported
                }
                try qcow2.applySnapshot(name)
            } catch let error as SnapshotError where error == .notSupported || error == .activeDirtyBitmaps {
                throw CommandFailure("Could not apply snapshot '\(name)': \(error)")
            } catch {
                let code = SnapshotError.errnoValue(of: error)
                throw CommandFailure("Could not apply snapshot '\(name)': Failed to load snapshot: \(String(cString: strerror(code)))")
            }
        case let .delete(name):
            // qemu-img finds the snapshot by name, then has it deleted.
            guard let qcow2, let found = try qcow2.listSnapshots().first(where: { $0.name == name }) else {
                throw CommandFailure("Could not delete snapshot '\(name)': snapshot not found")
            }
            do {
                try qcow2.deleteSnapshot(id: found.id, name: found.name)
            } catch {
                throw CommandFailure("Could not delete snapshot '\(name)': \(error)")
            }
        }
    }
}
