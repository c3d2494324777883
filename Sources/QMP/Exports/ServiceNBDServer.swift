// The service's NBD server (nbd-server-start/-stop, --nbd-server) and its
// block exports (block-export-add/-del, --export), as QEMU keeps them: one
// server at a time, exports by id, each an NBD export named on the server.
// An export removed while clients are connected is "shutting down" until
// its last client leaves; then BLOCK_EXPORT_DELETED, and its node is
// released. Main-loop thread only; the server's threads come back through
// the loop.
import BlockGraph
import NBD
import Qcow2
import QemuJSON
import Synchronization
import TLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class ServiceNBDServer {
    let server: NBDServer
    let deletions: SynchronousDeletions

    struct Export {
        var id: String
        /// The NBD export name.
        var name: String
        var use: NodeExportUse
        /// Busy while the export exists (QEMU's bdrv_dirty_bitmap_set_busy).
        var bitmaps: [NBDExportBitmap] = []
        var shuttingDown = false
    }

    /// Oldest first (query-block-exports lists newest first).
    private(set) var exports: [Export] = []

    init(server: NBDServer, deletions: SynchronousDeletions) {
        self.server = server
        self.deletions = deletions
    }

    func export(id: String) -> Export? { exports.first { $0.id == id } }

    /// Whether an export serves bitmap `name` of the image `owner`.
    func isBusy(owner: ObjectIdentifier, name: String) -> Bool {
        exports.contains { $0.bitmaps.contains { $0.owner == owner && $0.name == name } }
    }

    func add(_ export: Export) { exports.append(export) }

    func markShuttingDown(id: String) {
        if let index = exports.firstIndex(where: { $0.id == id }) { exports[index].shuttingDown = true }
    }

    /// The export gone from the NBD server: removed from the table and returned.
    func remove(name: String) -> Export? {
        guard let index = exports.firstIndex(where: { $0.name == name }) else { return nil }
        return exports.remove(at: index)
    }

    func removeAll() -> [Export] {
        defer { exports = [] }
        return exports
    }
}

/// Exports block-export-del is removing on the loop's thread: when the
/// server reports one deleted right inside removeExport (no client was
/// connected), the command handles it before its reply, so the event comes
/// first, as in QEMU; later reports come through the loop.
final class SynchronousDeletions: Sendable {
    private let state = Mutex<(removing: Set<String>, fired: Set<String>)>(([], []))

    /// Runs `body` (the removal); true if the deletion was reported meanwhile.
    func removing(_ name: String, _ body: () throws -> Void) rethrows -> Bool {
        state.withLock { _ = $0.removing.insert(name) }
        defer { state.withLock { _ = $0.removing.remove(name) } }
        try body()
        return state.withLock { $0.fired.remove(name) != nil }
    }

    /// The server's report: true if a removal in progress takes it.
    func takes(_ name: String) -> Bool {
        state.withLock { state in
            guard state.removing.contains(name) else { return false }
            state.fired.insert(name)
            return true
        }
    }
}

/// The service, weakly, for work the server's threads send to the loop.
// @unchecked: `service` is only read inside work run on the main loop's
// thread (MainLoopHandle.invoke), the service's own thread.
final class LoopThreadReference: @unchecked Sendable {
    weak var service: QMPService?
    init(_ service: QMPService) { self.service = service }
}

/// nbd-server-start's and --nbd-server's arguments.
struct NBDServerStartOptions {
    var address: NBDListenAddress
    var tlsCreds: String?
    var tlsAuthz: String?
    /// QEMU's NBD_DEFAULT_MAX_CONNECTIONS when not given (7.2.14 on, the
    /// CVE-2024-7409 fixes; 0 is no limit).
    var maxConnections: Int = 100
}

/// block-export-add's and --export's arguments (type nbd).
struct BlockExportOptions {
    var id: String
    var nodeName: String
    var writable = false
    var writethrough = false
    var name: String?
    var description: String?
    var bitmaps: [String] = []
    var allocationDepth = false
}

extension QMPService {
    func startNBDServer(_ options: NBDServerStartOptions) throws {
        guard nbdServer == nil else { throw QMPError.generic("NBD server already running") }
        var configuration = NBDServerConfiguration()
        configuration.maxConnections = options.maxConnections
        // As qemu-storage-daemon 7.2.22 (blockdev-nbd.c nbd_accept): every
        // client must finish its handshake within
        // NBD_DEFAULT_HANDSHAKE_MAX_SECS, so one that stalls gives its
        // max-connections slot back.
        configuration.handshakeTimeout = 10
        configuration.listenBacklog = Int32(SOMAXCONN)  // nbd_server_start's, a persistent server's
        let handle = loop.handle
        let deletions = SynchronousDeletions()
        let service = LoopThreadReference(self)
        configuration.onExportDeleted = { name in
            guard !deletions.takes(name) else { return }
            handle.invoke {
                guard let self = service.service, let served = self.nbdServer,
                      let export = served.remove(name: name) else { return }
                self.exportDeleted(export)
            }
        }
        if let id = options.tlsCreds {
            let credentials = try objects.tlsCredentials(id: id, endpoint: .server)
            configuration.tls = try TLSCredentialsProvider(credentials)
        }
        if options.tlsAuthz != nil {
            throw QMPError.generic("tls-authz: authorization objects are not supported by qcowkit")
        }
        let server = NBDServer(configuration: configuration)
        do {
            try server.listen(on: options.address)
        } catch let error as NBDServerError {
            server.stop()
            throw QMPError.generic(error.description)
        }
        nbdServer = ServiceNBDServer(server: server, deletions: deletions)
    }

    /// nbd-server-stop: every export is deleted (events first), then the server stops.
    func stopNBDServer() throws {
        guard let served = nbdServer else { throw QMPError.generic("NBD server not running") }
        nbdServer = nil
        served.server.stop()
        for export in served.removeAll() { exportDeleted(export) }
    }

    func addBlockExport(_ options: BlockExportOptions) throws {
        guard !options.id.isEmpty, Keyval.qapiNameLength(Array(options.id.utf8), from: 0) == options.id.utf8.count else {
            throw QMPError.generic("Invalid block export id")
        }
        if nbdServer?.export(id: options.id) != nil {
            throw QMPError.generic("Block export id '\(options.id)' is already in use")
        }
        let node = try graph.lookup(device: nil, nodeName: options.nodeName)
        guard let served = nbdServer else { throw QMPError.generic("NBD server not running") }
        let name = options.name ?? options.nodeName
        if served.server.exports.contains(where: { $0.name == name }) {
            throw QMPError.generic("NBD server already has export named '\(name)'")
        }
        let use = try graph.useForExport(node, writable: options.writable)
        let bitmaps: [NBDExportBitmap]
        do {
            bitmaps = try options.bitmaps.map {
                try NBDExportBitmap.lookup($0, from: node.bitmapLookupImage, readOnlyExport: !options.writable)
            }
        } catch {
            graph.release(use)
            throw QMPError.generic((error as? NBDServerError)?.description ?? Qcow2Error.reason(of: error))
        }
        if let busy = bitmaps.first(where: { served.isBusy(owner: $0.owner, name: $0.name) }) {
            graph.release(use)
            throw QMPError.generic(Self.busyBitmap(busy.name))
        }
        let backend = NodeExportBackend(use: use, writable: options.writable, writeThrough: options.writethrough)
        // QEMU 7.2 advertises multi-conn on every export of a server that
        // takes more than one client (compared with nbdinfo --json).
        let multiConnection = served.server.configuration.maxConnections != 1
        do {
            try served.server.addExport(NBDExport(name: name, description: options.description, backend: backend,
                                                  allocationDepth: options.allocationDepth,
                                                  multiConnection: multiConnection, bitmaps: bitmaps))
        } catch let error as NBDServerError {
            graph.release(use)
            throw QMPError.generic(error.description)
        }
        served.add(.init(id: options.id, name: name, use: use, bitmaps: bitmaps))
    }

    /// bdrv_dirty_bitmap_check's busy test, for the block-dirty-bitmap-*
    /// commands: a bitmap an export serves is left alone.
    func refuseExportedBitmap(node: String, name: String) throws {
        guard let served = nbdServer, let found = try? graph.lookup(device: node) else { return }
        if served.isBusy(owner: ObjectIdentifier(found.bitmapLookupImage), name: name) {
            throw QMPError.generic(Self.busyBitmap(name))
        }
    }

    static func busyBitmap(_ name: String) -> String {
        "Bitmap '\(name)' is currently in use by another operation and cannot be used"
    }

    /// block-export-del: `safe` refuses while clients are connected, `hard`
    /// drops them; the export is deleted (BLOCK_EXPORT_DELETED) once none is left.
    func deleteBlockExport(id: String, hard: Bool) throws {
        guard let served = nbdServer, let export = served.export(id: id) else {
            throw QMPError.generic("Export '\(id)' is not found")
        }
        if export.shuttingDown { throw QMPError.generic("Export '\(id)' is already shutting down") }
        let deletedNow: Bool
        do {
            deletedNow = try served.deletions.removing(export.name) {
                try served.server.removeExport(named: export.name, mode: hard ? .hard : .safe)
            }
        } catch let error as NBDServerError {
            throw QMPError.generic(error.description)
        }
        if deletedNow, let gone = served.remove(name: export.name) {
            exportDeleted(gone)
        } else {
            served.markShuttingDown(id: id)
        }
    }

    var blockExportsJSON: [JSONValue] {
        (nbdServer?.exports ?? []).reversed().map { export in
            .object([("node-name", .string(export.use.node.nodeName)), ("shutting-down", .bool(export.shuttingDown)),
                     ("type", .string("nbd")), ("id", .string(export.id))])
        }
    }

    private func exportDeleted(_ export: ServiceNBDServer.Export) {
        graph.release(export.use)
        emit("BLOCK_EXPORT_DELETED", data: .object([("id", .string(export.id))]))
    }
}
