// One client: its thread runs the handshake, then reads requests and queues
// them for the connection's workers, which run them against the export and
// write each reply whole under the send lock. At most 16 requests are in
// flight (read but not yet answered), which bounds a connection's memory;
// a stalled or hostile client holds only its own threads.
import BlockGraph
import Qcow2
import Synchronization

final class ClientConnection: Sendable {
    let server: NBDServer
    let transport: SocketTransport
    private let served = Mutex<ExportEntry?>(nil)
    /// Workers per connection: enough to overlap I/O of concurrent requests.
    static let workerCount = 4

    init(server: NBDServer, transport: SocketTransport) {
        self.server = server
        self.transport = transport
    }

    /// The export in transmission, once negotiated.
    var servedExport: ExportEntry? {
        get { served.withLock { $0 } }
        set { served.withLock { $0 = newValue } }
    }

    /// Drops the client: its blocked reads and writes fail.
    func drop() { transport.shutdown() }

    /// The connection's thread: handshake, then transmission, then clean-up.
    func run() {
        var negotiated = false
        var stream: any NBDTransport = transport
        defer {
            stream.shutdown()
            stream.close()
            transport.close()
            server.clientEnded(self, negotiated: negotiated)
        }
        transport.setNoDelay()
        server.deadlines?.arm(self)
        let directory = ExportDirectory(
            lookup: { [server] in server.lookupExport($0) },
            list: { [server] in server.listExports() },
            tls: server.configuration.tls)
        let session: NegotiatedSession
        do {
            defer { server.deadlines?.disarm(self) }
            session = try Negotiation(socket: transport, directory: directory).run()
        } catch NegotiationEnd.failed(let reason) {
            server.report("option negotiation failed: \(reason)")
            return
        } catch NegotiationEnd.greetingFailed(let reason) {
            server.report(reason)
            return
        } catch {
            return
        }
        stream = session.stream
        guard server.attach(self, to: session.entry) else { return }
        negotiated = true
        Transmission(session: session, report: { [server] in server.report($0) }).run()
    }
}

/// The transmission phase of one connection.
final class Transmission: Sendable {
    private let stream: any NBDTransport
    private let export: NBDExport
    private let structured: Bool
    private let meta: MetaContextSelection
    private let sendLock = Mutex<Void>(())
    private let queue = JobLock(WorkQueue())
    private let report: @Sendable (String) -> Void

    struct Work: Sendable {
        var request: NBDRequest
        var payload: [UInt8]
        var refusal: String?
    }

    struct WorkQueue {
        var pending: [Work] = []
        /// Read and not yet answered.
        var inFlight = 0
        var closing = false
        var workers = 0
    }

    init(session: NegotiatedSession, report: @escaping @Sendable (String) -> Void) {
        stream = session.stream
        export = session.entry.export
        structured = session.structuredReplies
        meta = session.metaContexts
        self.report = report
    }

    /// Reads requests until the client disconnects or breaks the protocol,
    /// then waits for the requests in flight to be answered.
    func run() {
        for _ in 0..<ClientConnection.workerCount {
            queue.withLock { $0.workers += 1 }
            if !spawnWorkerThread({ [self] in workerLoop() }) {
                queue.withLock { $0.workers -= 1 }
            }
        }
        if queue.withLock({ $0.workers }) == 0 {
            report("Disconnect client, due to: no worker thread")
        } else {
            readLoop()
        }
        queue.withLock { queue, waiter in
            queue.closing = true
            waiter.broadcast()
        }
        queue.withLock(when: { $0.workers == 0 }) { _, _ in }
    }

    private func readLoop() {
        let size = export.exportSize, readOnly = export.backend.isReadOnly
        while true {
            let open = queue.withLock(when: { $0.inFlight < NBDProtocol.maxRequestsInFlight || $0.closing }) { queue, _ in
                !queue.closing
            }
            guard open else { return }
            let header: [UInt8]
            do {
                header = try stream.read(count: NBDProtocol.requestHeaderSize)
            } catch NBDTransportError.endOfStream(partial: false) {
                return
            } catch let error as NBDTransportError {
                report("Disconnect client, due to: \(Negotiation.describe(error, reading: true))")
                return
            } catch {
                return
            }
            guard let request = NBDRequest(header: header) else {
                var reader = WireReader(header)
                let magic = reader.uint32() ?? 0
                report("Disconnect client, due to: invalid magic (got 0x\(String(magic, radix: 16)))")
                return
            }
            let plan = request.plan(size: size, readOnly: readOnly, structured: structured)
            if plan.disconnect && plan.refusal == nil { return }  // NBD_CMD_DISC
            var payload: [UInt8] = []
            if plan.payload > 0 {
                do {
                    payload = try stream.read(count: Int(plan.payload))
                } catch {
                    report("Disconnect client, due to: Failed to read CMD_WRITE data")
                    return
                }
            }
            if plan.disconnect {
                // Answered, then dropped: the unread payload is still on the wire.
                send(Self.errorReply(request, .invalid, plan.refusal!, structured: structured))
                stream.shutdown()
                report("Disconnect client, due to: Request handling failed in intermediate state")
                return
            }
            queue.withLock { queue, waiter in
                queue.pending.append(Work(request: request, payload: payload, refusal: plan.refusal))
                queue.inFlight += 1
                waiter.broadcast()
            }
        }
    }

    private func workerLoop() {
        defer {
            queue.withLock { queue, waiter in
                queue.workers -= 1
                waiter.broadcast()
            }
        }
        while true {
            let work = queue.withLock(when: { !$0.pending.isEmpty || $0.closing }) { queue, _ -> Work? in
                queue.pending.isEmpty ? nil : queue.pending.removeFirst()
            }
            guard let work else { return }
            handle(work)
            queue.withLock { queue, waiter in
                queue.inFlight -= 1
                waiter.broadcast()
            }
        }
    }

    // MARK: Replies

    /// Writes one reply's parts under the send lock; a failed write drops
    /// the connection (the reader then stops).
    func send(_ parts: [UInt8]...) {
        sendParts(parts)
    }

    func sendParts(_ parts: [[UInt8]]) {
        let sent: Bool = sendLock.withLock { _ in
            do {
                for (index, part) in parts.enumerated() where !part.isEmpty {
                    try stream.write(part, more: index < parts.count - 1)
                }
                return true
            } catch {
                return false
            }
        }
        if !sent { stream.shutdown() }
    }

    static func errorReply(_ request: NBDRequest, _ code: NBDErrorCode, _ message: String, structured: Bool) -> [UInt8] {
        structured ? Reply.errorChunk(cookie: request.cookie, error: code, message: message)
            : Reply.simple(cookie: request.cookie, error: code)
    }

    var exportForHandling: NBDExport { export }
    var structuredReplies: Bool { structured }
    var metaContexts: MetaContextSelection { meta }
}
