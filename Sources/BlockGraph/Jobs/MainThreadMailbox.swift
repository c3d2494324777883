// Work that job worker threads hand to the main thread, in one FIFO. The
// scheduler only carries "drain the mailbox" requests; keeping the work here
// lets the main thread drain it itself when it must wait for a job (cancel of
// a job whose run just ended, cancelAllAndWait at quit) without depending on
// the scheduler's loop running. Worker threads never hold the JobManager:
// work receives it when it runs, on the main thread.
import Synchronization

final class MainThreadMailbox: Sendable {
    typealias Work = @Sendable (JobManager) -> Void

    private struct Queue {
        var items: [Work] = []
        var head = 0
        /// A drain is running (work that drains again is not re-entered;
        /// the outer drain picks the rest up).
        var draining = false
    }

    private let scheduler: JobScheduler
    private let queue = Mutex(Queue())
    private let manager = ManagerReference()

    init(scheduler: JobScheduler) {
        self.scheduler = scheduler
    }

    /// Main thread, once: the manager that queued work runs against.
    func bind(_ manager: JobManager) { self.manager.object = manager }

    /// Any thread: queue `work` for the main thread.
    func post(_ work: @escaping Work) {
        enqueue(work)
        scheduleDrain()
    }

    /// Any thread: queue `work` without asking the scheduler yet (for a
    /// caller that must queue under its own lock; it calls `scheduleDrain`
    /// once it has let go of that lock).
    func enqueue(_ work: @escaping Work) {
        queue.withLock { $0.items.append(work) }
    }

    func scheduleDrain() {
        scheduler.scheduleOnMainThread { [self] in drain() }
    }

    /// Main thread: runs every queued item, oldest first, including items
    /// posted while draining.
    func drain() {
        guard let manager = manager.object else { return }
        let nested = queue.withLock { queue in
            defer { queue.draining = true }
            return queue.draining
        }
        if nested { return }
        defer { queue.withLock { $0.draining = false } }
        while let work = next() { work(manager) }
    }

    private func next() -> Work? {
        queue.withLock { queue in
            guard queue.head < queue.items.count else {
                queue.items.removeAll(keepingCapacity: true)
                queue.head = 0
                return nil
            }
            let work = queue.items[queue.head]
            queue.head += 1
            return work
        }
    }
}

/// The job manager, as the mailbox keeps it for its drains.
// @unchecked: set once before any work is queued, read only by `drain`, which runs on the main thread.
private final class ManagerReference: @unchecked Sendable {
    weak var object: JobManager?
}
