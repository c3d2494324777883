// -drive: QemuOpts' flat keys turned into the graph's BlockdevOptions, as
// QEMU's drive_new and bdrv_open read them. `file=` names the image file; the
// format is probed unless `format=`/`driver=` gives it; the backing chain is
// opened from the image headers, and `backing.KEY=` adjusts the node opened
// for the backing file (`backing.node-name=`, `backing.backing=NODE`, to any
// depth). Options that only concern a guest device (`if=`, `media=`,
// `index=`, ...) are accepted and have no effect; so are `cache=writeback`,
// `cache=writethrough` (which only set the guest device's write cache: there
// is none) and `aio=threads` (how QcowKit does I/O anyway), the values QEMU's
// iotests pass on every -drive; the other cache modes and aio engines, and the
// block layer's own options QcowKit does not implement (`snapshot=`,
// `copy-on-read=`, ...), are refused by name.
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
            // cache= and aio= themselves are read below (their harmless values pass).
            if name != "cache" && name != "aio" && (Self.unsupported.contains(group) || group == "throttling"
                || name.hasPrefix("iops") || name.hasPrefix("bps")) {
                throw QMPServiceError("Option '\(name)' is not supported")
            }
            keys[name] = opts[name]
        }
        if let interface = keys.removeValue(forKey: "if"), !Self.interfaces.contains(interface) {
            throw QMPServiceError("unsupported bus type '\(interface)'")
        }
        id = keys.removeValue(forKey: "id") ?? "none\(index)"
        if let mode = keys.removeValue(forKey: "cache") {
            // bdrv_parse_cache_mode's words; O_DIRECT and no-flush are not done on serve's nodes.
            guard ["off", "none", "directsync", "writeback", "writethrough", "unsafe"].contains(mode) else {
                throw QMPServiceError("invalid cache option")
            }
            guard mode == "writeback" || mode == "writethrough" else {
                throw QMPServiceError("Option 'cache=\(mode)' is not supported")
            }
        }
        if let aio = keys.removeValue(forKey: "aio") {
            // bdrv_parse_aio's words.
            guard ["threads", "native", "io_uring"].contains(aio) else { throw QMPServiceError("invalid aio option") }
            guard aio == "threads" else { throw QMPServiceError("Option 'aio=\(aio)' is not supported") }
        }
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
