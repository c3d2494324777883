// Work that job worker threads hand to the main thread, in one FIFO. The
// scheduler only carries "drain the mailbox" requests; keeping the work here
// lets the main thread drain it itself when it must wait for a job (cancel of
// a job whose run just ended, cancelAllAndWait at quit) without depending on
// the scheduler's loop running.

final class MainThreadMailbox: @unchecked Sendable {
    private let scheduler: JobScheduler
    private let lock = JobLock()
    private var queue: [() -> Void] = []
    private var head = 0
    /// Main thread only: a drain is running (work that drains again is not
    /// re-entered; the outer drain picks the rest up).
    private var draining = false

    init(scheduler: JobScheduler) {
        self.scheduler = scheduler
    }

    /// Any thread: queue `work` for the main thread.
    func post(_ work: @escaping () -> Void) {
        enqueue(work)
        scheduleDrain()
    }

    /// Any thread: queue `work` without asking the scheduler yet (for a
    /// caller that must queue under its own lock; it calls `scheduleDrain`
    /// once it has let go of that lock).
    func enqueue(_ work: @escaping () -> Void) {
        lock.withLock { queue.append(work) }
    }

    func scheduleDrain() {
        scheduler.scheduleOnMainThread { [self] in drain() }
    }

    /// Main thread: runs every queued item, oldest first, including items
    /// posted while draining.
    func drain() {
        if draining { return }
        draining = true
        defer { draining = false }
        while let work = next() { work() }
    }

    private func next() -> (() -> Void)? {
        lock.withLock {
            guard head < queue.count else {
                queue.removeAll(keepingCapacity: true)
                head = 0
                return nil
            }
            let work = queue[head]
            head += 1
            return work
        }
    }
}
