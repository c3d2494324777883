// A thread of its own for work that must run alongside its caller: the
// workers of a convert (ConvertCopy) each block on I/O and wait for their
// turn to write, which Dispatch's pools (sized to the cores) would starve.
// The one way the package starts threads: joined (WorkerThread) or detached
// (spawnWorkerThread: block jobs, NBD connections, bench's requests).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A POSIX thread running one closure, joined explicitly. (Dispatch's pools
/// may have no free worker when the caller is one of them; a reader that must
/// run alongside its caller gets a thread of its own.)
final class WorkerThread {
    private var thread = pthread_t()
    private let body: () -> Void

    /// Starts `body` on a new thread; nil if no thread could be created.
    init?(_ body: @escaping () -> Void) {
        self.body = body
        let context = Unmanaged.passRetained(self).toOpaque()
        let started = pthread_create(&thread, nil, { context in
            guard let context else { return nil }
            Unmanaged<WorkerThread>.fromOpaque(context).takeRetainedValue().body()
            return nil
        }, context)
        if started != 0 {
            Unmanaged<WorkerThread>.fromOpaque(context).release()
            return nil
        }
    }

    func join() { pthread_join(thread, nil) }

    /// Lets the thread end on its own; it is not joined.
    func detach() { pthread_detach(thread) }
}

/// Starts a detached thread running `body`; false if the system refused.
package func spawnWorkerThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    guard let thread = WorkerThread(body) else { return false }
    thread.detach()
    return true
}
