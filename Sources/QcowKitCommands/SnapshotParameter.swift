// convert's and measure's -l: the internal snapshot to read instead of the
// image's current state. As qemu-img 7.2 reads it: "snapshot.id=ID" and/or
// "snapshot.name=NAME" (QemuOpts; both given, both must match), or a bare
// ID-or-name. The snapshot is loaded into the opened source read-only
// (Qcow2Image.loadSnapshotTemporarily); failures get qemu-img's
// "Failed to load snapshot: " prefix.
import QMP
import Qcow2

enum SnapshotParameter: Equatable {
    case byIDAndName(id: String?, name: String?)
    case byIDOrName(String)

    /// Reads -l's argument; throws qemu-img's two messages for a bad
    /// snapshot.* list (qemu-nbd quotes the parameter `so').
    init(_ text: String, opening quote: String = "'") throws {
        guard text.hasPrefix("snapshot.") else {
            self = .byIDOrName(text)
            return
        }
        let opts = QemuOpts(text)
        for (name, _) in opts.entries where name != "snapshot.id" && name != "snapshot.name" {
            throw CommandFailure("Invalid parameter '\(name)'\n"
                                 + ProgramName.prefixed("Failed in parsing snapshot param \(quote)\(text)'"))
        }
        for element in text.split(separator: ",") where !element.contains("=") {
            Terminal.printError(ProgramName.prefixed(
                "warning: short-form boolean option '\(element)' deprecated\nPlease use \(element)=on instead"))
        }
        self = .byIDAndName(id: opts["snapshot.id"], name: opts["snapshot.name"])
    }

    /// Makes `image` read as the snapshot.
    func load(into image: BlockImage) throws {
        guard let qcow2 = image as? Qcow2Image else {
            throw CommandFailure("Failed to load snapshot: Block format '\(image.format.rawValue)' used by device '' "
                                 + "does not support temporarily loading internal snapshots")
        }
        do {
            switch self {
            case let .byIDAndName(id, name): try qcow2.loadSnapshotTemporarily(id: id, name: name)
            case let .byIDOrName(text): try qcow2.loadSnapshotTemporarily(idOrName: text)
            }
        } catch SnapshotError.notFound {
            throw CommandFailure("Failed to load snapshot: Can't find snapshot")
        } catch {
            throw CommandFailure("Failed to load snapshot: \(error)")
        }
    }
}
