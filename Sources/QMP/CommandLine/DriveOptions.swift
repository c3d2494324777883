// -drive: QemuOpts' flat keys turned into the graph's BlockdevOptions, as
// QEMU's drive_new and bdrv_open read them. `file=` names the image file; the
// format is probed unless `format=`/`driver=` gives it; the backing chain is
// opened from the image headers, and `backing.KEY=` adjusts the node opened
// for the backing file (`backing.node-name=`, `backing.backing=NODE`, to any
// depth). Options that only concern a guest device (`if=`, `media=`,
// `index=`, ...) are accepted and have no effect; the block layer's own
// options QcowKit does not implement (`cache=`, `aio=`, ...) are refused by
// name.
import BlockGraph
import Qcow2

public struct DriveOptions: Equatable, Sendable {
    /// The block backend's id (QEMU's "none<N>" when not given, N counting
    /// every -drive before it).
    public var id: String
    public var options: BlockdevOptions

    /// QEMU's interface names (`if=`): all are accepted, none matter here.
    static let interfaces: Set<String> = ["none", "ide", "scsi", "floppy", "pflash", "mtd", "sd", "virtio", "xen"]

    /// Options for the guest's device, not the block layer.
    static let deviceOnly: Set<String> = ["media", "index", "bus", "unit", "serial", "addr", "werror", "rerror", "boot"]
    /// Block-layer options of -drive that QcowKit does not implement.
    static let unsupported: Set<String> = [
        "cache", "aio", "discard", "detect-zeroes", "snapshot", "copy-on-read", "auto-read-only",
    ]

    /// `index`: how many -drive options came before this one.
    public init(_ opts: QemuOpts, index: Int) throws {
        var keys: [String: String] = [:]
        for name in opts.names where !Self.deviceOnly.contains(name) {
            let group = name.split(separator: ".").first.map(String.init) ?? name
            if Self.unsupported.contains(group) || group == "throttling" || name.hasPrefix("iops") || name.hasPrefix("bps") {
                throw QMPServiceError("Option '\(name)' is not supported")
            }
            keys[name] = opts[name]
        }
        if let interface = keys.removeValue(forKey: "if"), !Self.interfaces.contains(interface) {
            throw QMPServiceError("unsupported bus type '\(interface)'")
        }
        id = keys.removeValue(forKey: "id") ?? "none\(index)"
        if let legacy = keys.removeValue(forKey: "readonly") {
            keys["read-only"] = keys["read-only"] ?? legacy
        }
        if let format = keys.removeValue(forKey: "format") {
            guard keys["driver"] == nil else { throw QMPServiceError("Cannot specify both 'driver' and 'format'") }
            keys["driver"] = format
        }
        var file = keys.removeValue(forKey: "file")
        // file=PATH with file.KEY=...: PATH is the protocol node's filename.
        if let path = file, keys.keys.contains(where: { $0.hasPrefix("file.") }) {
            keys["file.filename"] = keys["file.filename"] ?? path
            file = nil
        }
        options = try FlatBlockOptions.node(keys.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        if let file {
            guard options.file == nil else { throw QMPServiceError("Parameters 'file.*' used inconsistently") }
            options.file = .filename(file)
        }
    }
}
