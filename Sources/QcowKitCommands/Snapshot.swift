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
import Qcow2

struct Snapshot: ParsedVerb {
    /// -l, as often as given.
    var list = 0
    var create: [String] = []
    var apply: [String] = []
    var delete: [String] = []
    var format: String?
    var quiet = false
    var locking = ImageLocking.standard
    var imageOpts = false
    var files: [String] = []

    /// qemu-img snapshot's command line after the verb, read as img_snapshot
    /// reads it (VerbGetopt).
    static func parse(_ words: [String]) throws(ExitCode) -> Snapshot {
        var snapshot = Snapshot()
        var options = VerbGetopt("snapshot", words)
        while let (code, value) = try options.next() {
            switch code {
            case UInt8(ascii: "l"): snapshot.list += 1
            case UInt8(ascii: "c"): snapshot.create.append(value)
            case UInt8(ascii: "a"): snapshot.apply.append(value)
            case UInt8(ascii: "d"): snapshot.delete.append(value)
            case UInt8(ascii: "f"): snapshot.format = value
            case UInt8(ascii: "q"): snapshot.quiet = true
            case QemuImgVerb.forceShare.code: snapshot.locking = .forceShared
            case QemuImgVerb.imageOpts.code: snapshot.imageOpts = true
            default: break
            }
        }
        snapshot.files = options.operands
        return snapshot
    }

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
                                               locking: locking)
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
