// The one lock over an open image's metadata (QEMU's s->lock), owning what it
// guards: the L1 table, the L2 and refcount caches, the allocator and the
// list of allocations in flight (`MetadataCore`). Readers hold it only to map
// a range, writers to allocate and to link; data I/O happens outside it. The
// condition lets a writer wait for an allocation in flight that overlaps its
// own (QEMU's dependent_requests).
//
// What the compiler checks, rather than a naming convention:
//  - the core is reachable only inside `withLock`: the lock keeps it private,
//    and the types that hold the lock (`ClusterMap`, `Qcow2Image`) are
//    checked Sendable, so they cannot keep the core's non-Sendable types
//    (`ClusterTables`, `Qcow2Writer`, the caches, the allocator) themselves;
//  - waiting, waking and releasing the lock take a `Held`, which only
//    `withLock` hands out (~Copyable and borrowed: it cannot be kept);
//  - `withoutLock`'s body is @Sendable and the core's types are not, so the
//    body cannot capture the core or anything reached through it ("capture
//    of non-Sendable type in a @Sendable closure" is an error in Swift 6).
// Not checked: a `withLock` body may still return a reference it found in the
// core. The code does so for L2 tables of an image opened read-only, whose
// contents never change (ClusterMap.swift), and for a request's own
// allocations in flight, whose mutable fields only that request touches
// (ClusterAllocation.swift, GuestWrite.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// @unchecked: pthread primitives; `core` is private and touched only with `mutex` held.
// The core is an object, not a stored value handed out `inout`: the lock may
// be released in the middle of a `withLock` body, and the I/O done then may
// take the lock again on the same thread (a copy-on-write read maps guest
// offsets), which would be an overlapping access to a stored value.
final class MetadataLock<Core: AnyObject>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let core: Core

    init(_ core: sending Core) {
        self.core = core
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` on the core with the lock held; `body` may wait, wake
    /// waiters and release the lock for I/O through the `Held` it is given.
    @inline(__always)
    func withLock<T>(_ body: (Core, borrowing Held) throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(core, Held(mutex: mutex, condition: condition))
    }

    /// Runs `body` on the core with the lock held.
    @inline(__always)
    func withLock<T>(_ body: (Core) throws -> T) rethrows -> T {
        try withLock { core, _ in try body(core) }
    }

    /// The lock, held: only handed out inside `withLock`.
    struct Held: ~Copyable {
        fileprivate let mutex: UnsafeMutablePointer<pthread_mutex_t>
        fileprivate let condition: UnsafeMutablePointer<pthread_cond_t>

        /// Runs `body` with the lock released, for I/O in the middle of a
        /// locked section; the lock is held again afterwards. `body` is
        /// @Sendable: it cannot capture the core (see the top of this file).
        @inline(__always)
        func withoutLock<T>(_ body: @Sendable () throws -> T) rethrows -> T {
            pthread_mutex_unlock(mutex)
            defer { pthread_mutex_lock(mutex) }
            return try body()
        }

        /// Sleeps until `broadcast()`; the lock is released meanwhile and
        /// held again on return.
        func wait() { pthread_cond_wait(condition, mutex) }

        /// Wakes every waiter.
        func broadcast() { pthread_cond_broadcast(condition) }
    }
}
