// `qcowkit serve`'s command line, in the spellings of qemu-system-x86_64 and
// qemu-storage-daemon (one or two leading dashes; `--opt=ARG` too):
//   -blockdev/--blockdev KEYVAL|JSON   -drive QEMUOPTS
//   -qmp stdio|unix:PATH[,server=on][,wait=off]   -qmp-pretty (the same)
//   -chardev/--chardev stdio,id=ID | socket,id=ID,path=PATH,server=on[,wait=off]
//   -mon [chardev=]ID,mode=control[,pretty=on]   --monitor [chardev=]ID[,pretty=on]
//   -object/--object KEYVAL|JSON (TLS credentials)
//   --nbd-server addr.type=unix,addr.path=P|addr.type=inet,addr.host=H,addr.port=N[,tls-creds=ID][,max-connections=N]
//   --export [type=]nbd,id=ID,node-name=NODE[,name=N][,writable=on][,description=D][,allocation-depth=on]
//   VM-only options, accepted and ignored: -nodefaults -nographic -display X
//   -serial X -machine X / -M X -accel X
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
    }

    public struct Monitor: Equatable, Sendable {
        /// The option that asked for it, for messages.
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
    public var wantsHelp = false

    public init() {}
}

public enum ServeCommandLine {
    private static let withArgument: Set<String> = [
        "blockdev", "drive", "qmp", "qmp-pretty", "chardev", "mon", "monitor", "object", "nbd-server", "export",
        "display", "serial", "machine", "M", "accel",
    ]
    private static let ignoredFlags: Set<String> = ["nodefaults", "nographic"]
    private static let ignoredWithArgument: Set<String> = ["display", "serial", "machine", "M", "accel"]

    public static func parse(_ arguments: [String]) throws -> ServeConfiguration {
        var configuration = ServeConfiguration()
        var chardevs: [String: (origin: String, endpoint: ServeConfiguration.Endpoint)] = [:]
        var monitorRequests: [(origin: String, chardev: String, pretty: Bool)] = []
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
                let request = try failing { try monitor(value, defaultMode: name == "monitor" ? "control" : "readline") }
                monitorRequests.append((origin, request.chardev, request.pretty))
            default:
                precondition(ignoredWithArgument.contains(name))
            }
        }
        var usedChardevs = Set<String>()
        for request in monitorRequests {
            guard let chardev = chardevs[request.chardev] else {
                throw QMPServiceError("\(request.origin): chardev \"\(request.chardev)\" not found")
            }
            guard usedChardevs.insert(request.chardev).inserted else {
                throw QMPServiceError("\(request.origin): chardev '\(request.chardev)' is already in use")
            }
            configuration.monitors.append(.init(origin: request.origin, endpoint: chardev.endpoint, pretty: request.pretty))
        }
        if configuration.monitors.filter({ $0.endpoint == .stdio }).count > 1 {
            let second = configuration.monitors.filter { $0.endpoint == .stdio }[1]
            throw QMPServiceError("\(second.origin): cannot use stdio by multiple character devices")
        }
        return configuration
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
            let rest = String(text.dropFirst("unix:".count))
            let path = String(rest.prefix { $0 != "," })
            let opts = QemuOpts(String(rest.dropFirst(path.count).drop { $0 == "," }))
            for name in opts.names where !["server", "wait"].contains(name) {
                throw QMPServiceError("Invalid parameter '\(name)'")
            }
            return try socketEndpoint(path: path, opts)
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
        case "socket": allowed = ["backend", "id", "path", "server", "wait"]
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
        guard let path = opts["path"] else { throw QMPServiceError("chardev: socket needs 'path' (a unix socket)") }
        return (id, try socketEndpoint(path: path, opts))
    }

    private static func socketEndpoint(path: String, _ opts: QemuOpts) throws -> ServeConfiguration.Endpoint {
        guard try opts.bool("server") == true else {
            throw QMPServiceError("only listening sockets are supported: add server=on")
        }
        guard !path.isEmpty else { throw QMPServiceError("socket path is empty") }
        _ = try opts.bool("wait")
        return .unixSocket(path: path)
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
