// The one lock over an open image's metadata (QEMU's s->lock): the L1 table,
// the L2 and refcount caches, the allocator and the list of allocations in
// flight. Readers hold it only to map a range, writers to allocate and to
// link; data I/O happens outside it. The condition lets a writer wait for an
// allocation in flight that overlaps its own (QEMU's dependent_requests).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class MetadataLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
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

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Runs `body` with the lock released (the caller holds it), for I/O in
    /// the middle of a locked section; the lock is held again afterwards.
    @inline(__always)
    func withoutLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_unlock(mutex)
        defer { pthread_mutex_lock(mutex) }
        return try body()
    }

    /// Sleeps until `broadcast()`; the caller holds the lock, which is
    /// released meanwhile and held again on return.
    func wait() { pthread_cond_wait(condition, mutex) }

    func broadcast() { pthread_cond_broadcast(condition) }
}
