// One client's conversation: the greeting, QEMU's JSON read as a stream,
// capability negotiation, one request at a time, replies and events in the
// client's output mode. Transport-free: bytes in through `receive`, bytes out
// through the `output` closure, so tests can drive a session directly.
import QemuJSON

final class QMPSession {
    let pretty: Bool
    /// Until `qmp_capabilities` succeeds only it may run, and no events come.
    private(set) var isNegotiated = false
    private(set) var isOOBEnabled = false
    private var parser = JSONMessageParser()
    private let output: ([UInt8]) -> Void
    private unowned let dispatcher: QMPDispatcher

    init(pretty: Bool, dispatcher: QMPDispatcher, output: @escaping ([UInt8]) -> Void) {
        self.pretty = pretty
        self.dispatcher = dispatcher
        self.output = output
    }

    /// Opens the conversation (QEMU's CHR_EVENT_OPENED).
    func start() {
        send(dispatcher.version.greeting)
    }

    func send(_ message: JSONValue) {
        output(QMPWire.encode(message, pretty: pretty))
    }

    /// Feeds received bytes; answers each complete request in order.
    func receive(_ bytes: [UInt8]) {
        for outcome in parser.feed(bytes) {
            // After quit nothing more is read, as QEMU stops dispatching.
            if dispatcher.isShuttingDown { return }
            switch outcome {
            case let .error(message):
                send(.object([("error", QMPError.generic(message).json)]))
            case let .value(request):
                handle(request)
            }
        }
    }

    /// The client went away: a half-read request is dropped.
    func inputEnded() {
        parser = JSONMessageParser()
    }

    func negotiate(enableOOB: Bool) {
        isNegotiated = true
        isOOBEnabled = enableOOB
    }

    private func handle(_ request: JSONValue) {
        var afterReply: [() -> Void] = []
        let id = request["id"]
        var reply: [(String, JSONValue)]
        switch dispatcher.dispatch(request, session: self, afterReply: &afterReply) {
        case let .success(value): reply = [("return", value)]
        case let .failure(error): reply = [("error", error.json)]
        }
        if let id { reply.append(("id", id)) }
        send(.object(reply))
        for work in afterReply { work() }
    }
}

/// What sessions need of the service: the version and the command table.
protocol QMPDispatcher: AnyObject {
    var version: QMPVersion { get }
    var isShuttingDown: Bool { get }
    /// Runs one request for `session`. `afterReply` collects work that must
    /// follow the reply on the wire (quit's SHUTDOWN event).
    func dispatch(_ request: JSONValue, session: QMPSession,
                  afterReply: inout [() -> Void]) -> Result<JSONValue, QMPError>
}
