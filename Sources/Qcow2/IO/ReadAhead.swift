// Reading ahead of a sequential writer: a second thread fills a few buffers
// in order while the caller consumes them in the same order. qemu-img convert
// overlaps its reads with its (in-order) writes the same way, with several
// requests in flight; on more than one core this hides the read time.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

enum ReadAhead {
    /// Calls `produce` on a second thread for buffer after buffer (at most
    /// `depth` ahead) until it returns nil or throws, and `consume` on this
    /// thread with each chunk and its buffer, in the same order. An error of
    /// either side ends both; a producer error is thrown once the consumer
    /// reaches it (everything produced before it is consumed first).
    static func run<Chunk>(
        depth: Int, bufferSize: Int,
        produce: (UnsafeMutableRawBufferPointer) throws -> Chunk?,
        consume: (Chunk, UnsafeMutableRawBufferPointer) throws -> Void
    ) throws {
        let depth = max(depth, 1)
        let buffers = (0..<depth).map { _ in
            UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 4096)
        }
        defer { for buffer in buffers { buffer.deallocate() } }
        // Slot i is written by the producer before it signals `filled` and
        // read by the consumer after waiting for it: the semaphores order
        // every access, and the two sides never touch the same slot at once.
        let results = UnsafeMutablePointer<Result<Chunk?, Error>?>.allocate(capacity: depth)
        results.initialize(repeating: nil, count: depth)
        defer {
            results.deinitialize(count: depth)
            results.deallocate()
        }
        // Created at zero and raised: libdispatch traps when a semaphore is
        // released below the value it was created with, which `free` is
        // when the run ends early.
        let free = DispatchSemaphore(value: 0)
        for _ in 0..<depth { free.signal() }
        let filled = DispatchSemaphore(value: 0)
        let stop = Atomic<Bool>(false)

        try withoutActuallyEscaping(produce) { produce in
            let producer = {
                var slot = 0
                while true {
                    free.wait()
                    if stop.load(ordering: .acquiring) { return }
                    let result = Result { try produce(buffers[slot]) }
                    results[slot] = result
                    filled.signal()
                    guard case .success(.some) = result else { return }
                    slot = (slot + 1) % depth
                }
            }
            guard let worker = WorkerThread(producer) else {
                // No thread to be had: read and write in turn.
                while let chunk = try produce(buffers[0]) { try consume(chunk, buffers[0]) }
                return
            }
            defer {
                // Wakes a producer waiting for a buffer; it sees `stop` and ends.
                stop.store(true, ordering: .releasing)
                free.signal()
                worker.join()
            }
            var slot = 0
            while true {
                filled.wait()
                guard let result = results[slot] else { return }
                results[slot] = nil
                guard let chunk = try result.get() else { return }
                try consume(chunk, buffers[slot])
                free.signal()
                slot = (slot + 1) % depth
            }
        }
    }
}

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
}
