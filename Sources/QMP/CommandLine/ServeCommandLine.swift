// `qcowkit serve`'s command line, in the spellings of qemu-system-x86_64 and
// qemu-storage-daemon (one or two leading dashes; `--opt=ARG` too):
//   -blockdev/--blockdev KEYVAL|JSON   -drive QEMUOPTS
//   -qmp stdio|unix:PATH[,server=on][,wait=off]   -qmp-pretty (the same)
//   -chardev/--chardev stdio,id=ID | socket,id=ID,path=PATH[,server=on[,wait=off]] | socket,id=ID,fd=N
//   -mon [chardev=]ID,mode=control[,pretty=on]   --monitor [chardev=]ID[,pretty=on]
//   -monitor none|null (qemu-system's: no monitor, an HMP monitor on nothing)
//   -object/--object KEYVAL|JSON (TLS credentials)
//   --nbd-server addr.type=unix,addr.path=P|addr.type=inet,addr.host=H,addr.port=N[,tls-creds=ID][,max-connections=N]
//   --export [type=]nbd,id=ID,node-name=NODE[,name=N][,writable=on][,description=D][,allocation-depth=on]
//   -pidfile/--pidfile PATH   -qtest stdio|unix:PATH (every qtest command answered as unknown)
//   VM-only options, accepted and ignored: -S -nodefaults -nographic -display X
//   -vga X -serial X -machine X / -M X -accel X -name X; -device is refused by name.
// A socket without server=on is connected to, as QEMU connects: test harnesses
// (QEMU's QEMUMachine, iotests' qemu-storage-daemon) listen and let the
// program they start connect its monitor to them.
// Errors name the option as given ("-blockdev ARG: message"), as QEMU does.
import BlockGraph
import QemuJSON

public struct ServeConfiguration: Sendable {
    public enum BlockDevice: Equatable, Sendable {
        case blockdev(BlockdevOptions)
        case drive(DriveOptions)
    }

    public enum Endpoint: Equatable, Sendable {
        case stdio
        /// A listening socket (server=on; wait=on and wait=off both accepted).
        case unixSocket(path: String)
        /// A socket connected to `path` at start-up (server=off, QEMU's default).
        case unixConnect(path: String)
        /// fd=N: a connected socket the parent passed down (QEMUMachine's socketpair).
        case socketDescriptor(Int32)
    }

    public struct Monitor: Equatable, Sendable {
        /// The option that made its channel (-qmp's, or the -chardev a
        /// -mon/--monitor names), for messages.
        public var origin: String
        public var endpoint: Endpoint
        public var pretty: Bool
    }

    /// In command-line order, each with its option as given (for messages).
    public var blockDevices: [(origin: String, device: BlockDevice)] = []
    public var monitors: [Monitor] = []
    /// --object, created first (as parsed, in QEMU).
    public var objects: [(origin: String, options: UserObjectOptions)] = []
    /// --nbd-server (after the block devices) and --export (after it).
    var nbdServers: [(origin: String, options: NBDServerStartOptions)] = []
    var exports: [(origin: String, options: BlockExportOptions)] = []
    /// -qtest: the qtest protocol's channel (every command answered as unknown).
    public var qtest: (origin: String, endpoint: Endpoint)?
    /// -pidfile/--pidfile: written once the nodes and exports are set up, removed at exit.
    public var pidFile: String?
    public var wantsHelp = false

    public init() {}
}

public enum ServeCommandLine {
    private static let withArgument = Set<String>([
        "blockdev", "drive", "qmp", "qmp-pretty", "chardev", "mon", "monitor", "object", "nbd-server", "export",
        "pidfile", "device", "qtest",
    ]).union(ignoredWithArgument)
    /// What only a virtual machine uses: with no guest here they change nothing
    /// (-S: no CPUs to hold back; -nodefaults: no default devices or monitor).
    private static let ignoredFlags: Set<String> = ["S", "nodefaults", "nographic"]
    private static let ignoredWithArgument: Set<String> = ["display", "vga", "serial", "machine", "M", "accel", "name"]

    public static func parse(_ arguments: [String]) throws -> ServeConfiguration {
        var configuration = ServeConfiguration()
        var chardevs: [String: (origin: String, endpoint: ServeConfiguration.Endpoint)] = [:]
        var monitorRequests: [(origin: String, option: String, value: String)] = []
        var driveCount = 0
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument.count > 1 else {
                throw QMPServiceError("Unexpected argument: \(argument)")
            }
            var name = String(argument.dropFirst(argument.hasPrefix("--") ? 2 : 1))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "="), withArgument.contains(String(name[..<equals])) {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            let spelled = String(argument.prefix(while: { $0 == "-" })) + name
            if name == "h" || name == "help" {
                configuration.wantsHelp = true
                continue
            }
            if ignoredFlags.contains(name) { continue }
            guard withArgument.contains(name) else { throw QMPServiceError("\(spelled): invalid option") }
            let value: String
            if let inlineValue {
                value = inlineValue
            } else {
                guard index < arguments.count else { throw QMPServiceError("\(spelled): requires an argument") }
                value = arguments[index]
                index += 1
            }
            let origin = "\(spelled) \(value)"
            func failing<T>(_ body: () throws -> T) throws -> T {
                do { return try body() } catch let error as QMPServiceError {
                    throw QMPServiceError("\(origin): \(error.message)")
                } catch let error as KeyvalError {
                    throw QMPServiceError("\(origin): \(error.message)")
                } catch let error as QMPError {
                    throw QMPServiceError("\(origin): \(error.desc)")
                }
            }
            switch name {
            case "blockdev":
                let options = try failing { try blockdevOptions(value) }
                configuration.blockDevices.append((origin, .blockdev(options)))
            case "drive":
                let drive = try failing { try DriveOptions(QemuOpts(value), index: driveCount) }
                driveCount += 1
                configuration.blockDevices.append((origin, .drive(drive)))
            case "object":
                configuration.objects.append((origin, try failing { try UserObjectOptionsInput.parse(commandLine: value) }))
            case "nbd-server":
                configuration.nbdServers.append((origin, try failing {
                    var input = try keyvalInput(value, impliedKey: nil)
                    return try NBDServerInput.start(&input, flatAddress: true)
                }))
            case "export":
                configuration.exports.append((origin, try failing {
                    var input = try keyvalInput(value, impliedKey: "type")
                    return try NBDServerInput.export(&input)
                }))
            case "qmp", "qmp-pretty":
                let endpoint = try failing { try compatEndpoint(value) }
                configuration.monitors.append(.init(origin: origin, endpoint: endpoint, pretty: name == "qmp-pretty"))
            case "chardev":
                let (id, endpoint) = try failing { try chardev(value) }
                guard chardevs[id] == nil else { throw QMPServiceError("\(origin): Duplicate ID '\(id)' for chardev") }
                chardevs[id] = (origin, endpoint)
            case "mon", "monitor":
                // Read once every -chardev is known: -monitor's meaning depends on them.
                monitorRequests.append((origin, name, value))
            case "pidfile":
                configuration.pidFile = value
            case "qtest":
                configuration.qtest = (origin, try failing { try compatEndpoint(value) })
            case "device":
                throw QMPServiceError("\(origin): \(deviceRefusal(value))")
            default:
                precondition(ignoredWithArgument.contains(name))
            }
        }
        var usedChardevs = Set<String>()
        for request in monitorRequests {
            let origin = request.origin
            let defaultMode: String
            if request.option == "monitor" {
                // qemu-storage-daemon's --monitor names a chardev (QMP);
                // qemu-system's -monitor is a chardev of its own (HMP).
                guard !isSystemMonitor(request.value, chardevs: Set(chardevs.keys)) else {
                    try systemMonitor(request.value, origin: origin, chardevs: Set(chardevs.keys))
                    continue
                }
                defaultMode = "control"
            } else {
                defaultMode = "readline"
            }
            let (id, pretty) = try withOrigin(origin) { try monitor(request.value, defaultMode: defaultMode) }
            guard let chardev = chardevs[id] else {
                throw QMPServiceError("\(origin): chardev \"\(id)\" not found")
            }
            guard usedChardevs.insert(id).inserted else {
                throw QMPServiceError("\(origin): chardev '\(id)' is already in use")
            }
            // The chardev's option names failures to open it, as QEMU opens it there.
            configuration.monitors.append(.init(origin: chardev.origin, endpoint: chardev.endpoint, pretty: pretty))
        }
        if configuration.monitors.filter({ $0.endpoint == .stdio }).count > 1 {
            let second = configuration.monitors.filter { $0.endpoint == .stdio }[1]
            throw QMPServiceError("\(second.origin): cannot use stdio by multiple character devices")
        }
        return configuration
    }

    private static func withOrigin<T>(_ origin: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as QMPServiceError {
            throw QMPServiceError("\(origin): \(error.message)")
        }
    }

    /// The compat chardev specs qemu-system's -monitor takes without a colon
    /// (qemu_chr_parse_compat), besides "none".
    private static let compatBackendWords: Set<String> = ["null", "stdio", "vc", "pty", "msmouse", "braille"]

    /// Whether -monitor VALUE is qemu-system's (a compat chardev spec, or
    /// none) rather than qemu-storage-daemon's (a chardev ID). A value that
    /// names a defined chardev is always the daemon's; chardev IDs cannot
    /// contain ':' or '/', compat specs with a colon or a device path always do.
    static func isSystemMonitor(_ value: String, chardevs: Set<String>) -> Bool {
        let opts = QemuOpts(value, impliedName: "chardev")
        if let id = opts["chardev"], chardevs.contains(id) { return false }
        let head = value.prefix { $0 != "," }
        if value.hasPrefix("none") || head.contains(":") || head.hasPrefix("/") { return true }
        // chardev=, mode=, pretty=: the daemon's spelling.
        if opts.names.contains(where: { $0 != "chardev" }) { return false }
        return compatBackendWords.contains(String(head))
    }

    /// qemu-system's -monitor: "none..." (QEMU compares four characters) asks
    /// for no monitor and "null" for an HMP monitor on a null chardev, one
    /// that never reads a byte; both are accepted and change nothing. Any
    /// other is a readline (HMP) monitor, which this service does not have.
    private static func systemMonitor(_ value: String, origin: String, chardevs: Set<String>) throws {
        if value.hasPrefix("none") || value == "null" { return }
        if value.hasPrefix("chardev:") {
            let id = String(value.dropFirst("chardev:".count))
            guard chardevs.contains(id) else { throw QMPServiceError("\(origin): chardev \"\(id)\" not found") }
        } else {
            let backend = String(value.prefix { $0 != ":" && $0 != "," })
            let known = compatBackendWords.union(compatBackendsWithColon)
            guard known.contains(backend) || value.hasPrefix("/") else {
                throw QMPServiceError("\(origin): '\(value)' is not a valid char driver")
            }
        }
        throw QMPServiceError("\(origin): HMP (readline) monitors are not supported: use -qmp, or -mon with mode=control")
    }

    /// Compat chardev specs of the form NAME:... (qemu_chr_parse_compat).
    private static let compatBackendsWithColon: Set<String> = [
        "unix", "tcp", "telnet", "websocket", "udp", "file", "pipe", "mon", "vc",
    ]

    /// -device: this service has no guest, so no device model exists here.
    /// The driver is named as QEMU reads it (implied first key, or JSON's).
    static func deviceRefusal(_ value: String) -> String {
        var driver: String?
        if value.hasPrefix("{") {
            if case let .success(.object(members)) = JSONValue.parse(value),
               case let .string(name)? = members.first(where: { $0.0 == "driver" })?.1 {
                driver = name
            }
        } else {
            driver = QemuOpts(value, impliedName: "driver")["driver"]
        }
        guard let driver, !driver.isEmpty else { return "Parameter 'driver' is missing" }
        return "device '\(driver)' is not supported: qcowkit serve has no guest devices"
    }

    /// -blockdev's argument: JSON if it starts with '{', else keyval with
    /// `driver` implied.
    static func blockdevOptions(_ text: String) throws -> BlockdevOptions {
        var input: QAPIInput
        if text.hasPrefix("{") {
            switch JSONValue.parse(text) {
            case let .failure(error): throw QMPServiceError(error.message)
            case let .success(value):
                guard case let .object(members) = value else {
                    throw QMPError.generic("Invalid parameter type for 'null', expected: object")
                }
                input = QAPIInput(members)
            }
        } else {
            guard case let .object(members) = try Keyval.parse(text, impliedKey: "driver") else {
                throw QMPServiceError("Invalid parameter ''")
            }
            input = QAPIInput(members, mode: .keyval)
        }
        return try BlockdevOptionsInput.decode(&input)
    }

    /// A keyval option's tree as QAPI input.
    static func keyvalInput(_ text: String, impliedKey: String?) throws -> QAPIInput {
        guard case let .object(members) = try Keyval.parse(text, impliedKey: impliedKey) else {
            throw QMPServiceError("Invalid parameter ''")
        }
        return QAPIInput(members, mode: .keyval)
    }

    /// -qmp's character device (qemu_chr_parse_compat): "stdio" or
    /// "unix:PATH" followed by socket options.
    static func compatEndpoint(_ text: String) throws -> ServeConfiguration.Endpoint {
        if text == "stdio" { return .stdio }
        if text.hasPrefix("unix:") {
            // The rest is socket options with "path" implied (unix:PATH or unix:path=PATH).
            let opts = QemuOpts(String(text.dropFirst("unix:".count)), impliedName: "path")
            for name in opts.names where !["path", "server", "wait"].contains(name) {
                throw QMPServiceError("Invalid parameter '\(name)'")
            }
            return try socketEndpoint(path: opts["path"] ?? "", fd: nil, opts)
        }
        let backend = String(text.prefix { $0 != ":" && $0 != "," })
        if ["tcp", "telnet", "websocket", "udp", "vc", "null", "pty", "file", "pipe", "mon", "chardev",
            "msmouse", "braille", "serial", "parallel", "tty"].contains(backend) {
            throw QMPServiceError("'\(backend)' is not supported here: use stdio or unix:PATH,server=on,wait=off")
        }
        throw QMPServiceError("'\(text)' is not a valid char driver")
    }

    /// -chardev: the backend (implied first key), an id, and the backend's options.
    static func chardev(_ text: String) throws -> (id: String, endpoint: ServeConfiguration.Endpoint) {
        let opts = QemuOpts(text, impliedName: "backend")
        guard let backend = opts["backend"] else { throw QMPServiceError("chardev: \"backend\" missing") }
        guard let id = opts["id"] else { throw QMPServiceError("chardev: no id specified") }
        let allowed: Set<String>
        switch backend {
        case "stdio": allowed = ["backend", "id", "signal"]
        case "socket": allowed = ["backend", "id", "path", "fd", "server", "wait"]
        default:
            if ["tcp", "udp", "vc", "null", "pty", "file", "pipe", "serial", "parallel", "tty", "ringbuf",
                "memory", "msmouse", "braille", "testdev", "spicevmc", "spiceport", "qemu-vdagent"].contains(backend) {
                throw QMPServiceError("chardev backend '\(backend)' is not supported here: use stdio or socket")
            }
            throw QMPServiceError("'\(backend)' is not a valid char driver name")
        }
        for name in opts.names where !allowed.contains(name) {
            throw QMPServiceError("Invalid parameter '\(name)'")
        }
        if backend == "stdio" {
            _ = try opts.bool("signal")
            return (id, .stdio)
        }
        return (id, try socketEndpoint(path: opts["path"], fd: opts["fd"], opts))
    }

    /// A unix socket: listening with server=on, else connected to at
    /// start-up (QEMU's client mode); or fd=N, a connected socket.
    private static func socketEndpoint(path: String?, fd: String?, _ opts: QemuOpts) throws -> ServeConfiguration.Endpoint {
        let server = try opts.bool("server") ?? false
        let wait = try opts.bool("wait")
        if let fd {
            guard path == nil else { throw QMPServiceError("chardev: socket takes 'path' or 'fd', not both") }
            guard !server else { throw QMPServiceError("chardev: a listening socket from 'fd' is not supported here: use path=PATH,server=on") }
            guard let number = Int32(fd), number >= 0 else { throw QMPServiceError("Parameter 'fd' expects a number") }
            return .socketDescriptor(number)
        }
        guard let path else { throw QMPServiceError("chardev: socket needs 'path' (a unix socket) or 'fd'") }
        guard !path.isEmpty else { throw QMPServiceError("socket path is empty") }
        if server { return .unixSocket(path: path) }
        if wait != nil { throw QMPServiceError("'wait' option is incompatible with socket in client connect mode") }
        return .unixConnect(path: path)
    }

    /// -mon / --monitor: a chardev id (implied first key), mode and pretty.
    static func monitor(_ text: String, defaultMode: String) throws -> (chardev: String, pretty: Bool) {
        let opts = QemuOpts(text, impliedName: "chardev")
        for name in opts.names where !["chardev", "mode", "pretty", "id"].contains(name) {
            throw QMPServiceError("Invalid parameter '\(name)'")
        }
        guard let chardev = opts["chardev"] else { throw QMPServiceError("Parameter 'chardev' is missing") }
        switch opts["mode"] ?? defaultMode {
        case "control": break
        case "readline": throw QMPServiceError("Only QMP is supported")
        case let other: throw QMPServiceError("Parameter 'mode' does not accept value '\(other)'")
        }
        return (chardev, try opts.bool("pretty") ?? false)
    }
}
