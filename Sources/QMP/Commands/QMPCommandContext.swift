// What a command body sees: the service (graph, jobs, events, shutdown), the
// session that asked (negotiation is per client), and a place for work that
// must follow the command's reply on the wire.
final class QMPCommandContext {
    unowned let service: QMPService
    unowned let session: QMPSession
    private(set) var afterReply: [() -> Void] = []

    init(service: QMPService, session: QMPSession) {
        self.service = service
        self.session = session
    }

    func doAfterReply(_ work: @escaping () -> Void) {
        afterReply.append(work)
    }
}
