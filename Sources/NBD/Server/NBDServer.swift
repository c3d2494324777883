// The NBD server: listeners on unix and TCP sockets, a table of exports by
// name, and the connections being served. What a caller (qcowkit nbd, the
// QMP side of qcowkit serve) sees; the protocol is in Negotiation.swift and
// Transmission.swift, the sockets in Listener.swift.
//
// Threads: each listener accepts on a thread of its own; each client gets a
// thread for the handshake and for reading its requests, and a few workers
// that run the requests and write the replies (ClientConnection.swift).
// The tables below are one state behind one lock; callbacks run outside it.
import BlockGraph
import Qcow2

/// How an `NBDServer` runs.
public struct NBDServerConfiguration: Sendable {
    /// The listen backlog: connections the system queues before they are
    /// accepted (qemu-nbd: SOMAXCONN with -t or -e 0, else -e's number;
    /// QEMU's QMP server: SOMAXCONN). The system caps it at its somaxconn.
    public var listenBacklog: Int32 = 128
    /// Clients served at once; 0 for no limit. While the limit is reached
    /// no further connection is accepted (they wait in the listen backlog),
    /// as QEMU's max-connections and qemu-nbd's -e do.
    public var maxConnections: Int = 0
    /// TLS credentials; set, the server requires TLS of every client.
    public var tls: (any NBDTLSProvider)?
    /// Seconds a client may take over the whole handshake, from accept to
    /// transmission, before it is dropped; 0 for no limit. 10 is QEMU's
    /// NBD_DEFAULT_HANDSHAKE_MAX_SECS, which qemu-nbd and the QMP server
    /// both use from QEMU 7.2.14 on (the CVE-2024-7409 fixes; Debian's 7.2
    /// has them; QEMU 7.2.0 had no limit).
    public var handshakeTimeout: Int = 10
    /// Called when a removed export is gone: its last client disconnected
    /// (QMP's BLOCK_EXPORT_DELETED).
    public var onExportDeleted: (@Sendable (_ name: String) -> Void)?
    /// Called when a client's connection has closed; `negotiated` when it
    /// had reached transmission (qemu-nbd exits after the first such one).
    public var onClientClosed: (@Sendable (_ negotiated: Bool) -> Void)?
    /// Where the server reports why it dropped a client ("Disconnect
    /// client, due to: ..."), as QEMU's error_report does.
    public var log: (@Sendable (_ message: String) -> Void)?

    public init() {}
}

/// How `removeExport` treats connected clients (QMP's BlockExportRemoveMode).
public enum NBDExportRemoveMode: String, Sendable {
    /// Refuse while clients are connected.
    case safe
    /// Drop the export's clients.
    case hard
}

/// An NBD server. Create it, `listen` on one or more addresses, add exports,
/// and `stop` it when done.
public final class NBDServer: Sendable {
    public let configuration: NBDServerConfiguration
    let state = JobLock(ServerState())
    /// The handshake limit's watcher; nil without a limit.
    let deadlines: HandshakeDeadlines?

    public init(configuration: NBDServerConfiguration = NBDServerConfiguration()) {
        self.configuration = configuration
        deadlines = configuration.handshakeTimeout > 0 ? HandshakeDeadlines(seconds: configuration.handshakeTimeout) : nil
    }

    // MARK: Listening

    /// Listens on `address` and serves clients that connect there; returns
    /// the addresses bound (an inet port 0 gets the one the system chose).
    /// With `accepting` false, clients wait in the listen backlog until
    /// `startAccepting()` (qemu-nbd binds before it opens its image, and
    /// serves once the export exists). Throws `NBDServerError` (the
    /// system's reason) when it cannot listen.
    @discardableResult
    public func listen(on address: NBDListenAddress, accepting: Bool = true) throws -> [NBDListenAddress] {
        let sockets = try ListeningSocket.open(address, backlog: configuration.listenBacklog)
        let (accepted, startWatcher) = state.withLock { state -> (Bool, Bool) in
            guard state.running else { return (false, false) }
            if !accepting { state.paused = true }
            state.listeners.append(contentsOf: sockets)
            state.threads += sockets.count
            let startWatcher = deadlines != nil && !state.watcherStarted
            if startWatcher {
                state.watcherStarted = true
                state.threads += 1
            }
            return (true, startWatcher)
        }
        guard accepted else {
            sockets.forEach { $0.close() }
            throw NBDServerError.stopped
        }
        if startWatcher, let deadlines {
            if !spawnWorkerThread({ [self] in
                deadlines.watch()
                threadEnded()
            }) {
                threadEnded()
            }
        }
        for socket in sockets {
            if !spawnWorkerThread({ [self] in acceptLoop(socket) }) {
                threadEnded()
            }
        }
        return sockets.map(\.address)
    }

    /// Accepts clients on every listener (after `listen(on:accepting: false)`).
    public func startAccepting() {
        state.withLock { state, waiter in
            state.paused = false
            waiter.broadcast()
        }
    }

    /// Stops listening and drops every client; returns once every thread of
    /// the server has ended. Exports are forgotten (not reported deleted).
    public func stop() {
        let (listeners, clients) = state.withLock { state -> ([ListeningSocket], [ClientConnection]) in
            state.running = false
            return (state.listeners, Array(state.clients.values))
        }
        listeners.forEach { $0.shutdown() }
        clients.forEach { $0.drop() }
        deadlines?.stop()
        state.withLock(when: { $0.threads == 0 }) { state, _ in
            state.listeners.removeAll()
            state.exports.removeAll()
            state.removedExports.removeAll()
        }
        listeners.forEach { $0.close() }
    }

    /// Whether `stop` has been called.
    public var isRunning: Bool { state.withLock { $0.running } }

    /// Clients connected now (in handshake or transmission).
    public var clientCount: Int { state.withLock { $0.clients.count } }

    // MARK: Exports

    /// Adds `export`. Throws `NBDServerError`: a name or description longer
    /// than 4096 bytes, a name already served.
    public func addExport(_ export: NBDExport) throws {
        if export.name.utf8.count > NBDProtocol.maxStringSize { throw NBDServerError.nameTooLong(export.name) }
        if let text = export.description, text.utf8.count > NBDProtocol.maxStringSize {
            throw NBDServerError.descriptionTooLong(text)
        }
        try state.withLock { state in
            guard state.running else { throw NBDServerError.stopped }
            guard state.export(named: export.name) == nil else { throw NBDServerError.duplicateExport(export.name) }
            state.exports.append(ExportEntry(export: export))
        }
    }

    /// Removes the export `name`: new clients no longer find it; `hard`
    /// drops its clients, `safe` refuses while it has any. The export is
    /// deleted (`onExportDeleted`) once its last client is gone.
    public func removeExport(named name: String, mode: NBDExportRemoveMode = .safe) throws {
        let (entry, clients) = try state.withLock { state -> (ExportEntry, [ClientConnection]) in
            guard let index = state.exports.firstIndex(where: { $0.export.name == name }) else {
                throw NBDServerError.noExport(name)
            }
            let entry = state.exports[index]
            let clients = state.clients.values.filter { $0.servedExport === entry }
            if mode == .safe && !clients.isEmpty { throw NBDServerError.exportInUse(name) }
            state.exports.remove(at: index)
            if !clients.isEmpty { state.removedExports.append(entry) }
            return (entry, clients)
        }
        if clients.isEmpty {
            configuration.onExportDeleted?(entry.export.name)
        } else {
            clients.forEach { $0.drop() }
        }
    }

    /// The exports served, in the order they were added (NBD_OPT_LIST's).
    public var exports: [NBDExport] { state.withLock { $0.exports.map(\.export) } }

    /// Clients in transmission on the export `name`.
    public func clientCount(exportNamed name: String) -> Int {
        state.withLock { state in
            guard let entry = state.export(named: name) else { return 0 }
            return state.clients.values.filter { $0.servedExport === entry }.count
        }
    }

    // MARK: Threads and clients (internal)

    private func acceptLoop(_ socket: ListeningSocket) {
        defer { threadEnded() }
        while true {
            let limit = configuration.maxConnections
            let running = state.withLock(when: { !$0.running || (!$0.paused && (limit <= 0 || $0.clients.count < limit)) }) { state, _ in
                state.running
            }
            guard running else { return }
            guard let descriptor = socket.accept() else {
                if !isRunning || socket.isShut { return }
                continue
            }
            let client = ClientConnection(server: self, transport: SocketTransport(descriptor: descriptor))
            let admitted = state.withLock { state -> Bool in
                guard state.running else { return false }
                state.clients[ObjectIdentifier(client)] = client
                state.threads += 1
                return true
            }
            guard admitted else {
                client.transport.close()
                return
            }
            if !spawnWorkerThread({ client.run() }) {
                client.transport.close()
                clientEnded(client, negotiated: false)
            }
        }
    }

    /// A client's thread is done with it.
    func clientEnded(_ client: ClientConnection, negotiated: Bool) {
        let deleted = state.withLock { state, waiter -> ExportEntry? in
            state.clients[ObjectIdentifier(client)] = nil
            state.threads -= 1
            waiter.broadcast()
            guard let entry = client.servedExport,
                  let index = state.removedExports.firstIndex(where: { $0 === entry }),
                  !state.clients.values.contains(where: { $0.servedExport === entry }) else { return nil }
            state.removedExports.remove(at: index)
            return entry
        }
        configuration.onClientClosed?(negotiated)
        if let deleted { configuration.onExportDeleted?(deleted.export.name) }
    }

    private func threadEnded() {
        state.withLock { state, waiter in
            state.threads -= 1
            waiter.broadcast()
        }
    }

    /// The export a client asks for by name, if served.
    func lookupExport(_ name: String) -> ExportEntry? {
        state.withLock { $0.export(named: name) }
    }

    /// Every export, for NBD_OPT_LIST.
    func listExports() -> [NBDExport] { exports }

    /// Records that `client` serves `entry`, unless the export was removed meanwhile.
    func attach(_ client: ClientConnection, to entry: ExportEntry) -> Bool {
        state.withLock { state in
            guard state.running, state.exports.contains(where: { $0 === entry }) else { return false }
            client.servedExport = entry
            return true
        }
    }

    func report(_ message: String) { configuration.log?(message) }
}

/// One export in the server's table.
final class ExportEntry: Sendable {
    let export: NBDExport
    init(export: NBDExport) { self.export = export }
}

struct ServerState {
    var running = true
    /// Listeners do not accept yet (`startAccepting`).
    var paused = false
    var exports: [ExportEntry] = []
    /// Removed but still served to clients connected before.
    var removedExports: [ExportEntry] = []
    var clients: [ObjectIdentifier: ClientConnection] = [:]
    var listeners: [ListeningSocket] = []
    /// Threads started by the server that have not ended yet.
    var threads = 0
    /// The handshake deadlines' watcher thread has been started.
    var watcherStarted = false

    func export(named name: String) -> ExportEntry? { exports.first { $0.export.name == name } }
}
