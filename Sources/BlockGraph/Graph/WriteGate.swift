// Who may write through a node at a time: any number of writes together
// (the codec orders concurrent requests itself, as QEMU's qcow2 driver does
// under s->lock), or one holder alone, a stream job deciding that a range is
// unallocated and filling it from below (QEMU serialises copy-on-read
// requests against writes the same way). A pthread read-write lock, with
// writers preferred so that the stream is not starved by a stream of writes.
import Glibc

// @unchecked: the lock is a pthread primitive at a fixed address, used only
// through the two methods below.
final class WriteGate: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// Runs one write, alongside other writes.
    func write<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// Runs `body` with no write in progress and none starting.
    func exclusive<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
