import QemuJSON
@testable import QMP

/// A service driven without a transport: sessions write into buffers.
final class SessionHarness {
    let service: QMPService
    private(set) var outputs: [[UInt8]] = []
    private var sessions: [QMPSession] = []

    init() throws {
        service = try QMPService(version: QMPVersion(major: 7, minor: 2, micro: 0, package: "test"))
    }

    /// Opens a client; returns its index.
    @discardableResult
    func connect(pretty: Bool = false) -> Int {
        let index = outputs.count
        outputs.append([])
        sessions.append(service.openSession(pretty: pretty) { [unowned self] bytes in self.outputs[index] += bytes })
        return index
    }

    func send(_ text: String, client: Int = 0) {
        sessions[client].receive(Array(text.utf8))
    }

    /// Everything client `client` received since the last call.
    func take(_ client: Int = 0) -> String {
        defer { outputs[client] = [] }
        return String(decoding: outputs[client], as: UTF8.self)
    }

    /// The messages received since the last call, parsed.
    func messages(_ client: Int = 0) -> [JSONValue] {
        var parser = JSONMessageParser()
        return parser.feed(Array(take(client).utf8)).compactMap {
            if case let .value(value) = $0 { return value }
            return nil
        }
    }

    /// Connects and negotiates; the greeting and reply are dropped.
    @discardableResult
    func negotiatedClient(pretty: Bool = false) -> Int {
        let client = connect(pretty: pretty)
        send("{\"execute\":\"qmp_capabilities\"}", client: client)
        _ = take(client)
        return client
    }
}
