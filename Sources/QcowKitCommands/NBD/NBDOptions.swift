// qemu-nbd 7.2's command line (qemu-nbd.c main): its option table read with
// the getopt emulation qemu-io's command line uses, and the checks qemu-nbd
// makes while and right after reading it, with its messages.
import NBD

/// What `qcowkit nbd` (qemu-nbd) was asked to do.
struct NBDOptions {
    var file: String?
    var format: String?
    var readOnly = false
    var snapshot = false
    var loadSnapshot: SnapshotParameter?
    var exportName = ""
    var description: String?
    var socketPath: String?
    var bind: String?
    var port: String?
    var shared = 1
    var persistent = false
    var verbose = false
    var allocationDepth = false
    var bitmaps: [String] = []
    var cacheMode: String?
    var writeThrough = false
    /// cache=none/directsync (-n): files opened O_DIRECT.
    var direct = false
    var discardUnmap = false
    var detectZeroes = NBDDetectZeroes.off
    var imageOpts = false
    var objects: [String] = []
    var tlsCreds: String?
    var tlsAuthz: String?
    var tlsHostname: String?
    var fork = false
    var pidFile: String?
    var device: String?
    var disconnect = false
    var list = false
    var offset: UInt64 = 0
    var selinuxLabel: String?

    /// Codes for long options without a letter (qemu-nbd's QEMU_NBD_OPT_*).
    private enum Long {
        static let cache: UInt8 = 0x80, aio: UInt8 = 0x81, discard: UInt8 = 0x82, detectZeroes: UInt8 = 0x83
        static let object: UInt8 = 0x84, tlsCreds: UInt8 = 0x85, imageOpts: UInt8 = 0x86, fork: UInt8 = 0x87
        static let tlsAuthz: UInt8 = 0x88, pidFile: UInt8 = 0x89, selinuxLabel: UInt8 = 0x8a, tlsHostname: UInt8 = 0x8b
    }

    private static let shortOptions = "hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:AB:L"
    private static let longOptions: [IOGetopt.LongOption] = [
        ("help", false, "h"), ("version", false, "V"), ("bind", true, "b"), ("port", true, "p"),
        ("socket", true, "k"), ("offset", true, "o"), ("read-only", false, "r"), ("allocation-depth", false, "A"),
        ("bitmap", true, "B"), ("connect", true, "c"), ("disconnect", false, "d"), ("list", false, "L"),
        ("snapshot", false, "s"), ("load-snapshot", true, "l"), ("nocache", false, "n"), ("shared", true, "e"),
        ("format", true, "f"), ("persistent", false, "t"), ("verbose", false, "v"), ("export-name", true, "x"),
        ("description", true, "D"), ("trace", true, "T"),
    ].map { IOGetopt.LongOption(name: $0.0, takesArgument: $0.1, code: UInt8(ascii: $0.2)) } + [
        ("cache", true, Long.cache), ("aio", true, Long.aio), ("discard", true, Long.discard),
        ("detect-zeroes", true, Long.detectZeroes), ("object", true, Long.object), ("tls-creds", true, Long.tlsCreds),
        ("tls-hostname", true, Long.tlsHostname), ("tls-authz", true, Long.tlsAuthz),
        ("image-opts", false, Long.imageOpts), ("fork", false, Long.fork), ("pid-file", true, Long.pidFile),
        ("selinux-label", true, Long.selinuxLabel),
    ].map { IOGetopt.LongOption(name: $0.0, takesArgument: $0.1, code: $0.2) }

    /// What parsing decided: run with these options, or exit with a status
    /// (help, version, a usage error already reported).
    enum Parsed {
        case run(NBDOptions)
        case exit(Int32)
    }

    static func parse(_ arguments: [String]) -> Parsed {
        var options = NBDOptions()
        // `qcowkit nbd` names itself so; as qemu-nbd the program is its name.
        // As qemu-nbd, argv[0] as given (getopt's messages and the "Try" line print it so).
        let asQemuNBD = Tool(invokedAs: ProgramName.current) != .qcowkit
        let program = asQemuNBD ? ProgramName.argv0 : "\(ProgramName.current) nbd"
        var getopt = IOGetopt([asQemuNBD ? ProgramName.argv0 : ProgramName.current] + arguments,
                              shortOptions: shortOptions, longOptions: longOptions)
        var seenCache = false, seenDiscard = false, seenAIO = false
        func fail(_ message: String) -> Parsed {
            Terminal.printError(ProgramName.prefixed(message))
            return .exit(1)
        }
        while let item = getopt.next() {
            guard case let .option(code, argument) = item else {
                if case let .error(message) = item { Terminal.printError(message) }
                return fail("Try `\(program) --help' for more information.")
            }
            let value = argument ?? ""
            switch code {
            case UInt8(ascii: "s"): options.snapshot = true
            case UInt8(ascii: "n"), Long.cache:
                if seenCache { return fail("-n and --cache can only be specified once") }
                seenCache = true
                let mode = code == Long.cache ? value : "none"
                var cache = IOOpenOptions()
                guard cache.setCacheMode(mode) else { return fail("Invalid cache mode `\(mode)'") }
                options.cacheMode = mode
                options.writeThrough = cache.writethrough
                options.direct = cache.direct
            case Long.aio:
                if seenAIO { return fail("--aio can only be specified once") }
                seenAIO = true
                guard ["threads", "native", "io_uring"].contains(value) else { return fail("Invalid aio mode '\(value)'") }
            case Long.discard:
                if seenDiscard { return fail("--discard can only be specified once") }
                seenDiscard = true
                switch value {
                case "ignore", "off": options.discardUnmap = false
                case "unmap", "on": options.discardUnmap = true
                default: return fail("Invalid discard mode `\(value)'")
                }
            case Long.detectZeroes:
                guard let mode = NBDDetectZeroes(rawValue: value) else {
                    return fail("Failed to parse detect_zeroes mode: invalid parameter value: \(value)")
                }
                if mode == .unmap && !options.discardUnmap {
                    return fail("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap")
                }
                options.detectZeroes = mode
            case UInt8(ascii: "b"): options.bind = value
            case UInt8(ascii: "p"): options.port = value
            case UInt8(ascii: "o"):
                guard let offset = parseUnsigned(value) else { return fail("Invalid offset '\(value)'") }
                options.offset = offset
            case UInt8(ascii: "l"):
                do { options.loadSnapshot = try SnapshotParameter(value, opening: "`") } catch { return fail("\(error)") }
                options.readOnly = true
            case UInt8(ascii: "r"): options.readOnly = true
            case UInt8(ascii: "A"): options.allocationDepth = true
            case UInt8(ascii: "B"): options.bitmaps.insert(value, at: 0)
            case UInt8(ascii: "k"):
                guard value.hasPrefix("/") else { return fail("socket path must be absolute") }
                options.socketPath = value
            case UInt8(ascii: "d"): options.disconnect = true
            case UInt8(ascii: "c"): options.device = value
            case UInt8(ascii: "e"):
                guard let shared = parseUnsigned(value), shared <= UInt64(Int32.max) else {
                    return fail("Invalid shared device number '\(value)'")
                }
                options.shared = Int(shared)
            case UInt8(ascii: "f"): options.format = value
            case UInt8(ascii: "t"): options.persistent = true
            case UInt8(ascii: "x"):
                if value.utf8.count > NBDProtocol.maxStringSize { return fail("export name '\(value)' too long") }
                options.exportName = value
            case UInt8(ascii: "D"):
                if value.utf8.count > NBDProtocol.maxStringSize {
                    return fail("export description '\(value)' too long")
                }
                options.description = value
            case UInt8(ascii: "v"): options.verbose = true
            case UInt8(ascii: "V"):
                Terminal.print(NBDHelp.version(program))
                return .exit(0)
            case UInt8(ascii: "h"):
                Terminal.print(NBDHelp.usage(program))
                return .exit(0)
            case Long.object: options.objects.append(value)
            case Long.tlsCreds: options.tlsCreds = value
            case Long.tlsHostname: options.tlsHostname = value
            case Long.imageOpts: options.imageOpts = true
            case UInt8(ascii: "T"):
                for event in IOProgram.traceEvents(value) {
                    Terminal.printError(ProgramName.prefixed("warning: trace event '\(event)' does not exist"))
                }
            case Long.tlsAuthz: options.tlsAuthz = value
            case Long.fork: options.fork = true
            case UInt8(ascii: "L"): options.list = true
            case Long.pidFile: options.pidFile = value
            case Long.selinuxLabel: options.selinuxLabel = value
            default: break
            }
        }
        let operands = getopt.operands
        if options.list {
            if !operands.isEmpty { return fail("List mode is incompatible with a file name") }
            if options.hasPerDeviceSettings || seenAIO || seenDiscard || seenCache {
                return fail("List mode is incompatible with per-device settings")
            }
            if options.fork { return fail("List mode is incompatible with forking") }
        } else if operands.count != 1 {
            Terminal.printError(ProgramName.prefixed("Invalid number of arguments"))
            Terminal.printError("Try `\(program) --help' for more information.")
            return .exit(1)
        } else {
            options.file = operands[0]
        }
        return .run(options)
    }

    private var hasPerDeviceSettings: Bool {
        !exportName.isEmpty || description != nil || offset != 0 || device != nil || disconnect || format != nil
            || loadSnapshot != nil || !bitmaps.isEmpty || allocationDepth
    }

    /// qemu_strtou64 with base 0: decimal, 0x hex or 0 octal, nothing after.
    private static func parseUnsigned(_ text: String) -> UInt64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
        if text.count > 1 && text.hasPrefix("0") { return UInt64(text.dropFirst(), radix: 8) }
        return UInt64(text)
    }
}
