// A job's state behind a mutex with one condition variable on the monotonic
// clock: what a job's worker thread and the main thread share. The state is
// reachable only with the mutex held, and waiting is only possible through
// `withLock(when:until:)`. (Synchronization's Mutex has no condition variable;
// pausing and rate-limit sleeps need one.)
import Glibc

// @unchecked: pthread primitives; `state` is private and touched only with `mutex` held.
package final class JobLock<State>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var state: State

    package init(_ state: State) {
        self.state = state
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` on the state with the mutex held; `body` may wake
    /// waiters through the `Waiter` it is given.
    package func withLock<T>(_ body: (inout State, borrowing Waiter) throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state, Waiter(condition: condition))
    }

    /// Waits, with the mutex held between wake-ups, until `ready` holds for
    /// the state or the monotonic clock reaches `deadline` (nanoseconds;
    /// `.max` for no deadline), then runs `body` on it.
    /// This is the only way to wait: a wait inside `body` would sit in the
    /// middle of an `inout` access to the state, which the optimiser may read
    /// once for a whole loop (a release build then waits for ever); here each
    /// check is its own access, after the wake-up.
    package func withLock<T>(when ready: (State) -> Bool, until deadline: UInt64 = .max,
                             _ body: (inout State, borrowing Waiter) throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(state) {
            if deadline == .max {
                pthread_cond_wait(condition, mutex)
                continue
            }
            guard monotonicNanoseconds() < deadline else { break }
            var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            _ = pthread_cond_timedwait(condition, mutex, &time)
        }
        return try body(&state, Waiter(condition: condition))
    }

    /// Runs `body` on the state with the mutex held.
    package func withLock<T>(_ body: (inout State) throws -> T) rethrows -> T {
        try withLock { state, _ in try body(&state) }
    }

    /// Waking the threads that wait in `withLock(when:)`; only handed out
    /// inside `withLock`.
    package struct Waiter: ~Copyable {
        fileprivate let condition: UnsafeMutablePointer<pthread_cond_t>

        /// Wakes every waiter.
        package func broadcast() { pthread_cond_broadcast(condition) }
    }
}

/// The monotonic clock in nanoseconds (QEMU_CLOCK_REALTIME's role for jobs).
package func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}
