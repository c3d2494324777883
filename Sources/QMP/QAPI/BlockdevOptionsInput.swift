// QAPI's BlockdevOptions (qapi/block-core.json), the part QcowKit implements,
// read from blockdev-add's arguments or -blockdev's keyval tree: a union on
// `driver`, base members first, then the driver's own, each visited in the
// schema's order so the first problem reported is QEMU's.
//   base:  node-name, discard, cache {direct, no-flush}, read-only,
//          auto-read-only, force-share, detect-zeroes
//   file:  filename, locking, aio, aio-max-batch, drop-cache, x-check-cache-dropped
//   qcow2: file (BlockdevRef), backing (BlockdevRefOrNull), lazy-refcounts,
//          pass-discard-*, overlap-check (a mode or {template, per-check
//          flags}), cache-size, l2-cache-size, l2-cache-entry-size,
//          refcount-cache-size, cache-clean-interval
//   raw:   file (BlockdevRef)
// The runtime options (everything but node-name, read-only, force-share,
// filename, locking, file, backing) are checked as QEMU checks them, at the
// visitor and then at open (qcow2's cache sizes, file's aio=native), and have
// no other effect, as in the flat reader (FlatBlockOptions); encrypt,
// data-file, pr-manager and raw's offset/size are refused by name.
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
        let discard = try input.optionalEnum("discard", ["ignore", "unmap"])
        var direct: Bool?
        if var cache = try input.optionalObject("cache", typeName: "BlockdevCacheOptions") {
            direct = try cache.optionalBool("direct")
            options.cacheNoFlush = try cache.optionalBool("no-flush")
            try cache.finish()
        }
        options.readOnly = try input.optionalBool("read-only")
        _ = try input.optionalBool("auto-read-only")
        options.forceShare = try input.optionalBool("force-share")
        let detectZeroes = try input.optionalEnum("detect-zeroes", ["off", "on", "unmap"])
        // bdrv_open_common's check, once the node's members are all read.
        func checkDetectZeroes() throws {
            if detectZeroes == "unmap" && discard != "unmap" {
                throw QMPError.generic("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap")
            }
        }
        switch driver {
        case "file":
            options.filename = try input.string("filename")
            try refuse(&input, "pr-manager")
            if let mode = try input.optionalEnum("locking", FileLockingMode.allCases.map(\.rawValue)) {
                options.locking = FileLockingMode(rawValue: mode)
            }
            let aio = try input.optionalEnum("aio", ["threads", "native", "io_uring"])
            _ = try input.optionalInt64("aio-max-batch")
            _ = try input.optionalBool("drop-cache")
            _ = try input.optionalBool("x-check-cache-dropped")
            try input.finish()
            try checkDetectZeroes()
            // file-posix's open: native AIO needs O_DIRECT.
            if aio == "native" && direct != true {
                throw QMPError.generic("aio=native was specified, but it requires cache.direct=on, which was not specified.")
            }
            return options
        case "qcow2":
            options.file = try blockdevRef(&input, "file")
            options.backing = try backing(&input)
            try qcow2RuntimeOptions(&input)
        default:
            options.file = try blockdevRef(&input, "file")
            try refuse(&input, "offset")
            try refuse(&input, "size")
        }
        try input.finish()
        try checkDetectZeroes()
        return options
    }

    /// A member QcowKit has no effect for and will not ignore.
    private static func refuse(_ input: inout QAPIInput, _ name: String) throws {
        guard input.take(name) != nil else { return }
        throw QMPError.generic("Option '\(input.fullName(name))' is not supported by qcowkit")
    }

    /// BlockdevOptionsQcow2's members after backing, in the schema's order,
    /// then qcow2_update_options' cache-size rules.
    private static func qcow2RuntimeOptions(_ input: inout QAPIInput) throws {
        for name in ["lazy-refcounts", "pass-discard-request", "pass-discard-snapshot", "pass-discard-other"] {
            _ = try input.optionalBool(name)
        }
        let modes = FlatBlockOptions.overlapCheckModes
        if let value = input.take("overlap-check") {
            // Qcow2OverlapChecks: an alternate of a mode and per-check flags.
            switch value {
            case let .string(mode):
                guard modes.contains(mode) else {
                    throw QMPError.generic("Parameter '\(input.fullName("overlap-check"))' does not accept value '\(mode)'")
                }
            case let .object(members):
                var flags = QAPIInput(members, mode: input.mode, prefix: input.fullName("overlap-check") + ".")
                _ = try flags.optionalEnum("template", modes)
                for check in FlatBlockOptions.overlapChecks { _ = try flags.optionalBool(check) }
                try flags.finish()
            default:
                throw input.wrongType("overlap-check", expected: "Qcow2OverlapChecks")
            }
        }
        var sizes: [String: Int64] = [:]
        for name in ["cache-size", "l2-cache-size", "l2-cache-entry-size", "refcount-cache-size", "cache-clean-interval"] {
            if let value = try input.optionalInt64(name) { sizes[name] = value }
        }
        try refuse(&input, "encrypt")
        try refuse(&input, "data-file")
        if let combined = sizes["cache-size"] {
            let l2 = sizes["l2-cache-size"], refcount = sizes["refcount-cache-size"]
            if l2 != nil && refcount != nil {
                throw QMPError.generic("cache-size, l2-cache-size and refcount-cache-size may not be set at the same time")
            }
            if let l2, l2 > combined { throw QMPError.generic("l2-cache-size may not exceed cache-size") }
            if let refcount, refcount > combined { throw QMPError.generic("refcount-cache-size may not exceed cache-size") }
        }
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
