// How job worker threads reach the service's thread: an idle callback on the
// service's main loop (attached in call order, run in that order).
import BlockGraph

final class MainLoopScheduler: JobScheduler {
    private let loop: MainLoopHandle

    init(loop: MainLoopHandle) { self.loop = loop }

    func scheduleOnMainThread(_ work: @escaping @Sendable () -> Void) {
        loop.invoke(work)
    }
}
