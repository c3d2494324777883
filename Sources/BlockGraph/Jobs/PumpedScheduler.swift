// The main loop of a program without one (qemu-img commit, tests): work a
// job's threads schedule for the main thread is queued here, and the thread
// that plays the main loop runs it when it pumps. The QMP service has its
// GLib loop instead (MainLoopScheduler).

package final class PumpedScheduler: JobScheduler {
    private let pending = JobLock<[@Sendable () -> Void]>([])

    package init() {}

    package func scheduleOnMainThread(_ work: @escaping @Sendable () -> Void) {
        pending.withLock { pending, waiter in
            pending.append(work)
            waiter.broadcast()
        }
    }

    /// Runs what is queued now, and what that queues; whether anything ran.
    @discardableResult
    package func pump() -> Bool {
        var ran = false
        while true {
            let batch = pending.withLock { pending -> [@Sendable () -> Void] in
                defer { pending.removeAll() }
                return pending
            }
            if batch.isEmpty { return ran }
            for work in batch { work() }
            ran = true
        }
    }

    /// Waits until work is queued, at most `milliseconds`, then pumps.
    @discardableResult
    package func waitAndPump(milliseconds: UInt64) -> Bool {
        let deadline = monotonicNanoseconds() + milliseconds * 1_000_000
        pending.withLock(when: { !$0.isEmpty }, until: deadline) { _, _ in }
        return pump()
    }

    /// Pumps until `done` holds; false after `seconds` without it.
    @discardableResult
    package func pump(until done: () -> Bool, seconds: Double = 10) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1_000_000_000)
        while true {
            pump()
            if done() { return true }
            if monotonicNanoseconds() >= deadline { return false }
            waitAndPump(milliseconds: 5)
        }
    }
}
