// The QMP service: a main loop, the monitors clients connect through, one
// session per client, the command table, events to every negotiated client,
// and an orderly shutdown (quit or a signal): jobs settled, images flushed
// and closed, socket files removed, last words delivered.
//
// Threads: everything here runs on the thread that calls `serve()` (the main
// loop's); block jobs' worker threads come back through `loop.handle`.
import BlockGraph
import NBD
import QemuJSON
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public final class QMPService: QMPDispatcher {
    public enum ShutdownReason: String, Sendable {
        case hostQMPQuit = "host-qmp-quit"
        case hostSignal = "host-signal"
    }

    public let loop: MainLoop
    public let version: QMPVersion
    /// The block graph clients work on (main-loop thread only).
    public let graph = BlockGraph()
    /// The block jobs; their events go to every negotiated client.
    public private(set) lazy var jobs = JobManager(scheduler: MainLoopScheduler(loop: loop.handle)) { [weak self] event in
        let (name, data) = event.qmpEvent
        self?.emit(name, data: data)
    }
    /// --object and object-add's objects (TLS credentials).
    public let objects = UserObjects()
    /// The NBD server, once started (Exports/ServiceNBDServer.swift).
    var nbdServer: ServiceNBDServer?
    private(set) var isShuttingDown = false
    private(set) var shutdownReason: ShutdownReason?

    private var sessions: [QMPSession] = []
    private var connections: [ObjectIdentifier: Connection] = [:]
    private var listeners: [UnixSocketListener] = []
    private var signalSources: [MainLoop.Source] = []
    private var hasStdioMonitor = false
    /// -qtest's channels.
    private var qtestChannels: [QtestChannel] = []
    /// -pidfile's file, removed when the service ends.
    private var pidFile: PIDFile?
    private var commands: [String: QMPCommand] = [:]
    /// query-commands' order.
    private(set) var commandNames: [String] = []

    /// A service on a main loop of its own (which opens GLib: this throws
    /// if it cannot be loaded).
    public convenience init(version: QMPVersion) throws(QMPServiceError) {
        self.init(version: version, loop: try MainLoop())
    }

    public init(version: QMPVersion, loop: MainLoop) {
        self.loop = loop
        self.version = version
        for command in Self.commandTable() {
            commands[command.name] = command
            commandNames.append(command.name)
        }
    }

    // MARK: Monitors

    /// QMP on standard input and output.
    public func addStdioMonitor(pretty: Bool) throws {
        guard !hasStdioMonitor else {
            throw QMPServiceError("cannot use stdio by multiple character devices")
        }
        hasStdioMonitor = true
        // A reader that went away must not kill the service with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let connection = Connection(loop: loop, inputFD: 0, outputFD: 1, isSocket: false, ownsFDs: false)
        attach(connection, pretty: pretty)
    }

    /// QMP on a listening unix socket. (QEMU's wait=on holds the guest
    /// back until a client connects; with no guest here, nothing happens
    /// before a client connects anyway, so there is nothing to wait for.)
    public func addSocketMonitor(path: String, pretty: Bool) throws {
        signal(SIGPIPE, SIG_IGN)
        let listener = try UnixSocketListener(path: path, loop: loop)
        listeners.append(listener)
        listener.start { [weak self] connection in self?.attach(connection, pretty: pretty) }
    }

    /// QMP on a socket connected at start-up: to `path` (a chardev socket
    /// without server=on), or `fd`, a connected socket passed down. QEMU's
    /// client mode: the peer listens (test harnesses do) and gets the
    /// greeting. Once it hangs up the monitor is gone; the service goes on.
    public func addConnectedMonitor(path: String, pretty: Bool) throws {
        attach(try Self.connect(path: path, loop: loop), pretty: pretty)
    }

    public func addConnectedMonitor(fd: Int32, pretty: Bool) throws {
        attach(try Self.adopt(fd: fd, loop: loop), pretty: pretty)
    }

    private static func connect(path: String, loop: MainLoop) throws -> Connection {
        signal(SIGPIPE, SIG_IGN)
        let fd: Int32
        do { fd = try UnixStreamSocket.connect(path: path) } catch { throw QMPServiceError(error.message) }
        setNonBlocking(fd)
        return Connection(loop: loop, inputFD: fd, outputFD: fd, isSocket: true, ownsFDs: true)
    }

    private static func adopt(fd: Int32, loop: MainLoop) throws -> Connection {
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK else {
            throw QMPServiceError("File descriptor '\(fd)' is not a socket")
        }
        signal(SIGPIPE, SIG_IGN)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        setNonBlocking(fd)
        return Connection(loop: loop, inputFD: fd, outputFD: fd, isSocket: true, ownsFDs: true)
    }

    /// -qtest's channel (QtestChannel): on stdio, a listening socket (each
    /// connection a channel) or a socket connected at start-up.
    func addQtestChannel(_ endpoint: ServeConfiguration.Endpoint) throws {
        func open(_ connection: Connection) {
            let channel = QtestChannel(connection)
            qtestChannels.append(channel)
            channel.start()
        }
        switch endpoint {
        case .stdio:
            guard !hasStdioMonitor else { throw QMPServiceError("cannot use stdio by multiple character devices") }
            hasStdioMonitor = true
            signal(SIGPIPE, SIG_IGN)
            open(Connection(loop: loop, inputFD: 0, outputFD: 1, isSocket: false, ownsFDs: false))
        case let .unixSocket(path):
            signal(SIGPIPE, SIG_IGN)
            let listener = try UnixSocketListener(path: path, loop: loop)
            listeners.append(listener)
            listener.start { connection in open(connection) }
        case let .unixConnect(path): open(try Self.connect(path: path, loop: loop))
        case let .socketDescriptor(fd): open(try Self.adopt(fd: fd, loop: loop))
        }
    }

    /// Writes -pidfile's file (QMPServiceSetup: after the monitors).
    func writePIDFile(_ path: String) throws {
        pidFile = try PIDFile(path: path)
    }

    /// A new client: its session joins the event audience and gets the
    /// greeting. (Tests drive sessions through this without a transport.)
    func openSession(pretty: Bool, output: @escaping ([UInt8]) -> Void) -> QMPSession {
        let session = QMPSession(pretty: pretty, dispatcher: self, output: output)
        sessions.append(session)
        session.start()
        return session
    }

    private func attach(_ connection: Connection, pretty: Bool) {
        let session = openSession(pretty: pretty) { [weak connection] bytes in
            connection?.send(bytes)
        }
        connections[ObjectIdentifier(session)] = connection
        connection.onInput = { [weak session] bytes in
            guard let session else { return }
            if let bytes { session.receive(bytes) } else { session.inputEnded() }
        }
        connection.onClose = { [weak self, weak session] in
            guard let self, let session else { return }
            self.sessions.removeAll { $0 === session }
            self.connections[ObjectIdentifier(session)] = nil
        }
        connection.start()
    }

    // MARK: Dispatch and events

    func dispatch(_ request: JSONValue, session: QMPSession,
                  afterReply: inout [() -> Void]) -> Result<JSONValue, QMPError> {
        let context = QMPCommandContext(service: self, session: session)
        let result = QMPRequestDispatch.dispatch(
            request, negotiated: session.isNegotiated, oobEnabled: session.isOOBEnabled,
            negotiation: ControlCommands.negotiation, commands: commands, context: context)
        afterReply += context.afterReply
        return result
    }

    /// Sends an event to every client that has negotiated.
    func emit(_ event: String, data: JSONValue?) {
        var message: [(String, JSONValue)] = [("timestamp", Self.timestamp()), ("event", .string(event))]
        if let data { message.append(("data", data)) }
        let value = JSONValue.object(message)
        for session in sessions where session.isNegotiated { session.send(value) }
    }

    /// QEMU's event timestamp: wall-clock seconds and microseconds.
    static func timestamp() -> JSONValue {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return .object([("seconds", .int(Int64(now.tv_sec))), ("microseconds", .int(Int64(now.tv_nsec / 1000)))])
    }

    // MARK: Running and shutting down

    /// Makes SIGINT, SIGTERM and SIGHUP shut the service down (SHUTDOWN
    /// with reason host-signal). Call before setting up, so that a signal
    /// during setup still leads to an orderly exit once `serve` runs.
    public func handleSignals() {
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signalSources.append(loop.onSignal(number) { [weak self] in
                guard let self, !self.isShuttingDown else { return }
                ServiceLog.note("terminating on signal \(number)")
                self.beginShutdown()
                self.shutDown(reason: .hostSignal)
            })
        }
    }

    /// Serves until quit (or a signal, after `handleSignals`), then shuts
    /// down in order. Returns why it stopped.
    @discardableResult
    public func serve() -> ShutdownReason {
        if shutdownReason == nil { loop.run() }
        finishShutdown()
        return shutdownReason ?? .hostQMPQuit
    }

    /// Stops taking requests (the reply to the request in progress still goes out).
    func beginShutdown() {
        isShuttingDown = true
    }

    /// Announces the shutdown and leaves the loop; `serve` does the rest.
    func shutDown(reason: ShutdownReason) {
        guard shutdownReason == nil else { return }
        isShuttingDown = true
        shutdownReason = reason
        emit("SHUTDOWN", data: .object([("guest", .bool(false)), ("reason", .string(reason.rawValue))]))
        loop.quit()
    }

    /// Undoes a setup that failed: listeners closed (socket files removed),
    /// images closed, nothing served.
    func abandon() {
        nbdServer?.server.stop()
        nbdServer = nil
        for listener in listeners { listener.close() }
        listeners = []
        for connection in connections.values { connection.close() }
        qtestChannels.forEach { $0.close() }
        qtestChannels = []
        // As bdrv_close_all: closing cannot fail; images reported what they
        // could not write back (Qcow2Diagnostics).
        try? graph.closeAll()
        pidFile?.remove()
        pidFile = nil
    }

    private func finishShutdown() {
        signalSources.forEach { $0.cancel() }
        signalSources = []
        for listener in listeners { listener.close() }
        listeners = []
        // Clients go before the images close (QEMU's blk_exp_close_all).
        nbdServer?.server.stop()
        nbdServer = nil
        settleBlockLayer()
        // One second in all for the last words, however many clients lag,
        // and half a second for clients to hang up first.
        var remaining: Int32 = 1000
        for connection in connections.values {
            remaining = max(0, connection.drain(milliseconds: remaining))
        }
        var linger: Int32 = 500
        for connection in connections.values {
            linger = max(0, connection.lingerUntilPeerCloses(milliseconds: linger))
            connection.close()
        }
        connections = [:]
        sessions = []
        qtestChannels.forEach { $0.close() }
        qtestChannels = []
        // Last, as QEMU removes it at exit.
        pidFile?.remove()
        pidFile = nil
    }
}
