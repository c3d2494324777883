// bdrv_open's flat options (block.c): "key=value" pairs whose dotted keys
// reach into children ("file.filename", "backing.node-name"), as -drive
// gives them (QemuOpts), qemu-img's --image-opts gives them (QemuOpts with
// the implied key "file") and a json:{...} filename gives them (flattened,
// qdict_flatten). One reader for all three, in QEMU's order: the `file`
// child is opened first, then the node's own options are checked (each
// value by its type, then the driver's cross checks), and only then is a
// key nobody took reported ("Block format 'qcow2' does not support the
// option 'foo'").
//
// The drivers' runtime options that only tune QEMU's caches and discards
// (l2-cache-size, lazy-refcounts, pass-discard-*, overlap-check, cache.*,
// aio, ...) are checked as QEMU checks them and then have no effect here.
import BlockGraph
import Qcow2
import QemuJSON

public enum FlatBlockOptions {
    /// A flat value: a string, or JSON's null (json:{"backing": null}).
    public typealias Value = String?

    enum Kind: Sendable {
        case bool, size, number, string
        /// QEMU's message for a value outside `values`.
        case choice([String], message: @Sendable (String, String) -> String)
        /// A size option whose effect QcowKit lacks: its value is checked
        /// as QEMU checks it, then it is refused by name (never ignored).
        /// Not `indirect`: a boxed payload in a static table is reported as
        /// a leak by LeakSanitizer (the box pointer carries the enum's tag
        /// bits), which fails the fuzz targets.
        case refusedSize
    }

    private static func qapiEnum(_ values: [String]) -> Kind {
        .choice(values) { _, value in "invalid parameter value: \(value)" }
    }

    /// Every node's options (bdrv_runtime_opts and bdrv_open's own).
    static let common: [String: Kind] = [
        "node-name": .string, "driver": .string, "read-only": .bool, "auto-read-only": .bool,
        "force-share": .bool, "cache.direct": .bool, "cache.no-flush": .bool,
        "discard": .choice(["ignore", "off", "unmap", "on"]) { _, _ in "Invalid discard option" },
        "detect-zeroes": qapiEnum(["off", "on", "unmap"]),
    ]

    package static let overlapCheckModes = ["none", "constant", "cached", "all"]
    package static let overlapChecks = ["main-header", "active-l1", "active-l2", "refcount-table", "refcount-block",
                                "snapshot-table", "inactive-l1", "inactive-l2", "bitmap-directory"]

    /// Each driver's runtime options (qcow2_runtime_opts, raw's, file-posix's).
    static let drivers: [String: [String: Kind]] = [
        "qcow2": {
            var options: [String: Kind] = [
                "lazy-refcounts": .bool, "pass-discard-request": .bool, "pass-discard-snapshot": .bool,
                "pass-discard-other": .bool, "cache-size": .size, "l2-cache-size": .size,
                "l2-cache-entry-size": .size, "refcount-cache-size": .size, "cache-clean-interval": .number,
            ]
            for key in ["overlap-check", "overlap-check.template"] {
                options[key] = .choice(overlapCheckModes) { name, value in
                    "Unsupported value '\(value)' for qcow2 option '\(name)'. Allowed are any of the following: "
                        + overlapCheckModes.joined(separator: ", ")
                }
            }
            for check in overlapChecks { options["overlap-check." + check] = .bool }
            return options
        }(),
        "raw": ["offset": .refusedSize, "size": .refusedSize],
        "file": [
            "filename": .string, "aio": qapiEnum(["threads", "native", "io_uring"]), "aio-max-batch": .number,
            "locking": qapiEnum(FileLockingMode.allCases.map(\.rawValue)), "drop-cache": .bool,
            "x-check-cache-dropped": .bool,
        ],
    ]

    /// Options of QEMU's that QcowKit refuses by name rather than ignore.
    static let refusedPrefixes = ["encrypt.", "data-file", "pr-manager"]

    /// json:{...} as bdrv_open reads it (parse_json_filename): the options,
    /// flattened, in the object's order.
    public static func parseJSONFilename(_ text: String) throws -> [(String, Value)] {
        let json: JSONValue
        switch JSONValue.parse(String(text.dropFirst("json:".count))) {
        case let .success(value): json = value
        case let .failure(error): throw QMPServiceError("Could not parse the JSON options: \(error)")
        }
        guard case .object = json else { throw QMPServiceError("Invalid JSON object given") }
        var flat: [(String, Value)] = []
        flatten(json, prefix: "", into: &flat)
        return flat
    }

    /// qdict_flatten: nested objects and arrays become dotted keys; scalars
    /// become the strings QemuOpts makes of them (bools "on"/"off").
    private static func flatten(_ value: JSONValue, prefix: String, into flat: inout [(String, Value)]) {
        func key(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }
        switch value {
        case let .object(members):
            for (name, member) in members { flatten(member, prefix: key(name), into: &flat) }
        case let .array(elements):
            for (index, element) in elements.enumerated() { flatten(element, prefix: key(String(index)), into: &flat) }
        case .null: flat.append((prefix, nil))
        case let .bool(flag): flat.append((prefix, flag ? "on" : "off"))
        case let .int(number): flat.append((prefix, String(number)))
        case let .uint(number): flat.append((prefix, String(number)))
        case let .double(number): flat.append((prefix, String(number)))
        case let .string(text): flat.append((prefix, text))
        }
    }

    /// One node's options from its flat keys (a child's come in with their
    /// prefix taken off; `context` prefixes messages). The last value given
    /// for a key wins.
    public static func node(_ pairs: [(String, Value)], context: String = "", isProtocol: Bool = false) throws -> BlockdevOptions {
        try node(pairs, context: context, isProtocol: isProtocol, probing: false).options
    }

    /// A format node whose driver is probed when its file opens (no
    /// `driver` given, as qemu-img's and qemu-io's image operands): which of
    /// its options are the format's is known only then, so the keys nobody
    /// took come back `undecided`, for `checkProbed` once the format is known.
    public static func probedNode(_ pairs: [(String, Value)]) throws -> (options: BlockdevOptions, undecided: [(String, Value)]) {
        try node(pairs, context: "", isProtocol: false, probing: true)
    }

    /// The undecided options of a probed node, checked against the probed
    /// format's table as bdrv_open checks them after probing.
    public static func checkProbed(_ undecided: [(String, Value)], driver: String) throws {
        // Nothing to check (a plain file name): the table is not built.
        guard !undecided.isEmpty else { return }
        let table = drivers[driver] ?? [:]
        var remaining: [(String, Value)] = []
        for (key, value) in undecided {
            guard let kind = table[key] else { remaining.append((key, value)); continue }
            if let text = value { try check(key, text, kind, context: "") }
        }
        if let key = QDictOrder.ordered(remaining).first?.0 {
            throw QMPServiceError("Block format '\(driver)' does not support the option '\(key)'")
        }
    }

    private static func node(_ pairs: [(String, Value)], context: String, isProtocol: Bool,
                             probing: Bool) throws -> (options: BlockdevOptions, undecided: [(String, Value)]) {
        var keys: [String: Value] = [:]
        var order: [String] = []
        for (key, value) in pairs {
            if keys.updateValue(value, forKey: key) == nil { order.append(key) }
        }
        var options = BlockdevOptions()
        var own: [(String, Value)] = []
        var fileKeys: [(String, Value)] = []
        var backingKeys: [(String, Value)] = []
        for key in order {
            let value = keys[key] ?? nil
            if key.hasPrefix("file.") {
                fileKeys.append((String(key.dropFirst("file.".count)), value))
            } else if key.hasPrefix("backing.") {
                backingKeys.append((String(key.dropFirst("backing.".count)), value))
            } else {
                own.append((key, value))
            }
        }
        let driver = keys["driver"] ?? nil
        if let driver, !["qcow2", "raw", "file"].contains(driver) {
            throw QMPServiceError(context + "Unknown driver '\(driver)'")
        }
        options.driver = driver
        var remaining = Dictionary(own, uniquingKeysWith: { $1 })

        // The protocol child comes first.
        if let reference = remaining.removeValue(forKey: "file"), let name = reference {
            guard fileKeys.isEmpty else { throw QMPServiceError(context + "Parameters 'file.*' used inconsistently") }
            options.file = .node(name)
        } else if !fileKeys.isEmpty {
            var protocolOptions = try node(fileKeys, context: context, isProtocol: true, probing: false).options
            if protocolOptions.driver == nil { protocolOptions.driver = "file" }
            guard protocolOptions.driver == "file" else {
                throw QMPServiceError(context + "Driver '\(protocolOptions.driver ?? "")' is not supported as a protocol")
            }
            options.file = .options(protocolOptions)
        }

        // The node's own options, each checked by its type.
        let table = common.merging(drivers[driver ?? (isProtocol ? "file" : "")] ?? [:]) { $1 }
        for (key, value) in own where key != "file" {
            if let prefix = refusedPrefixes.first(where: { key.hasPrefix($0) }) {
                throw QMPServiceError(context + "Option '\(prefix.hasSuffix(".") ? prefix + "*" : prefix)' is not supported by qcowkit")
            }
            guard let kind = table[key], let text = value else { continue }
            try check(key, text, kind, context: context)
            remaining[key] = nil
            switch key {
            case "node-name": options.nodeName = text
            case "filename": options.filename = text
            case "read-only": options.readOnly = bool(text)
            case "force-share": options.forceShare = bool(text)
            case "locking": options.locking = FileLockingMode(rawValue: text)
            default: break
            }
        }
        if driver == "qcow2" {
            if let mode = keys["overlap-check"] ?? nil, let template = keys["overlap-check.template"] ?? nil, mode != template {
                throw QMPServiceError(context + "Conflicting values for qcow2 options 'overlap-check' ('\(mode)') "
                    + "and 'overlap-check.template' ('\(template)')")
            }
            try checkCacheSizes(keys, context: context)
        }

        if let backing = remaining.removeValue(forKey: "backing") {
            guard backingKeys.isEmpty else { throw QMPServiceError(context + "Parameters 'backing.*' used inconsistently") }
            options.backing = backing.map { $0.isEmpty || $0 == "null" ? .none : .node($0) } ?? .none
        } else if !backingKeys.isEmpty {
            options.backing = .fromImage(try node(backingKeys, context: context + "Could not open backing file: ", isProtocol: false, probing: false).options)
        }
        if probing && driver == nil {
            return (options, remaining.map { ($0.key, $0.value) })
        }
        if let key = QDictOrder.ordered(Array(remaining)).first?.0 {
            let node = isProtocol ? "Block protocol '\(driver ?? "file")' doesn't"
                : options.driver.map { "Block format '\($0)' does not" } ?? "The block driver does not"
            throw QMPServiceError(context + "\(node) support the option '\(key)'")
        }
        return (options, [])
    }

    /// The options a reopen of a `driver` node may change besides
    /// read-only and cache.*: bdrv_reopen_prepare's `discard` and
    /// `detect-zeroes`, the driver's runtime options (qcow2's, as
    /// qcow2_reopen_prepare reads them anew) and its file child's
    /// `file.drop-cache` (file-posix's reopen takes it). They are checked as
    /// at open (QEMU's messages, qcow2's cache-size rules) and, as at open,
    /// have no other effect. Returns the keys it took; the caller refuses the rest.
    public static func checkReopen(_ pairs: [(String, String)], driver: String) throws -> Set<String> {
        var table: [String: Kind] = ["discard": common["discard"]!, "detect-zeroes": common["detect-zeroes"]!]
        if driver == "qcow2" { table.merge(drivers["qcow2"] ?? [:]) { $1 } }
        var taken = Set<String>()
        var keys: [String: Value] = [:]
        for (key, value) in pairs {
            if key == "file.drop-cache" {
                try check("drop-cache", value, .bool, context: "")
                taken.insert(key)
                continue
            }
            guard let kind = table[key] else { continue }
            try check(key, value, kind, context: "")
            taken.insert(key)
            keys[key] = value
        }
        if driver == "qcow2" {
            if let mode = keys["overlap-check"] ?? nil, let template = keys["overlap-check.template"] ?? nil, mode != template {
                throw QMPServiceError("Conflicting values for qcow2 options 'overlap-check' ('\(mode)') "
                    + "and 'overlap-check.template' ('\(template)')")
            }
            try checkCacheSizes(keys, context: "")
        }
        return taken
    }

    private static func bool(_ text: String) -> Bool { ["on", "yes", "true", "y"].contains(text) }

    /// A value as QemuOpts parses it for the option's type.
    static func check(_ key: String, _ text: String, _ kind: Kind, context: String) throws {
        switch kind {
        case .string:
            return
        case .bool:
            guard ["on", "yes", "true", "y", "off", "no", "false", "n"].contains(text) else {
                throw QMPServiceError(context + "Parameter '\(key)' expects 'on' or 'off'")
            }
        case .size:
            guard case .success = QemuSize.parse(text), !text.hasPrefix("-") else {
                throw QMPServiceError(context + "Parameter '\(key)' expects a non-negative number below 2^64\n"
                    + "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                    + "and exabytes, respectively.")
            }
        case .number:
            guard !text.isEmpty, UInt64(text) != nil else {
                throw QMPServiceError(context + "Parameter '\(key)' expects a number")
            }
        case let .choice(values, message):
            guard values.contains(text) else { throw QMPServiceError(context + message(key, text)) }
        case .refusedSize:
            try check(key, text, .size, context: context)
            throw QMPServiceError(context + "Option '\(key)' is not supported by qcowkit")
        }
    }

    /// qcow2's read_cache_sizes: the combined size and its parts.
    private static func checkCacheSizes(_ keys: [String: Value], context: String) throws {
        func size(_ key: String) -> UInt64? {
            guard let text = keys[key] ?? nil, case let .success(size) = QemuSize.parse(text) else { return nil }
            return size.value
        }
        guard let combined = size("cache-size") else { return }
        let l2 = size("l2-cache-size"), refcount = size("refcount-cache-size")
        if l2 != nil && refcount != nil {
            throw QMPServiceError(context + "cache-size, l2-cache-size and refcount-cache-size may not be set at the same time")
        }
        if let l2, l2 > combined { throw QMPServiceError(context + "l2-cache-size may not exceed cache-size") }
        if let refcount, refcount > combined {
            throw QMPServiceError(context + "refcount-cache-size may not exceed cache-size")
        }
    }
}
