// The chunks an active commit copies at once (QEMU's mirror keeps up to 16
// operations in flight): each worker thread reads one chunk through top's
// chain and writes it to base, so that reading one chunk overlaps writing
// another and both cores work. The workers take turns writing: buffered
// writes to one file serialise on its inode lock in the kernel anyway, and
// writers queued there spin (measured: a third of the CPU time with four
// workers writing at once). The job's thread hands out chunks and handles
// what comes back (progress, the speed limit, the on-error policy); a chunk
// overlapping one in flight waits (QEMU's mirror_wait_on_conflicts), so a
// guest write racing a copy is copied again only after that copy landed.

import Glibc
import Qcow2

final class MirrorInFlight: Sendable {
    typealias Chunk = (offset: UInt64, length: UInt64)

    /// A chunk done: copied, or failed with the error its copy threw.
    struct Completion {
        var chunk: Chunk
        var error: (any Error)?
    }

    /// Chunks in flight at once (2 MiB of buffers): one read while one is
    /// written.
    static let maxInFlight = 2

    private struct State {
        var queued: [Chunk] = []
        var inFlight: [Chunk] = []
        var completed: [Completion] = []
        var workers = 0
        var stopping = false
    }
    private let state = JobLock(State())
    /// Held by the worker writing to base: a plain pthread mutex, whose
    /// waiter sleeps. (Synchronization's Mutex is a priority-inheritance
    /// futex on Linux, and its waiter spins in the kernel for as long as the
    /// holder runs: a whole buffered write, a core's worth of CPU.)
    private let writeTurn = JobLock(())
    private let top: BlockNode
    private let layers: [BlockNode]
    private let base: BlockNode

    /// Starts the workers (none if the system gives no thread: then
    /// `submit` copies on the caller's thread).
    init(top: BlockNode, layers: [BlockNode], base: BlockNode) {
        self.top = top
        self.layers = layers
        self.base = base
        for _ in 0..<Self.maxInFlight {
            state.withLock { $0.workers += 1 }
            if !spawnWorkerThread({ [self] in work() }) {
                state.withLock { state, waiter in
                    state.workers -= 1
                    waiter.broadcast()
                }
                break
            }
        }
    }

    var inFlightCount: Int { state.withLock { $0.inFlight.count } }

    /// Bytes of the chunks in flight (still to count as copied).
    var inFlightBytes: UInt64 { state.withLock { $0.inFlight.reduce(0) { $0 + $1.length } } }

    /// Whether `chunk` overlaps a chunk in flight.
    func overlapsInFlight(_ chunk: Chunk) -> Bool {
        state.withLock { state in
            state.inFlight.contains { $0.offset < chunk.offset + chunk.length && chunk.offset < $0.offset + $0.length }
        }
    }

    /// Queues `chunk` for the next free worker.
    func submit(_ chunk: Chunk) {
        let queued = state.withLock { state, waiter -> Bool in
            guard state.workers > 0 else { return false }
            state.inFlight.append(chunk)
            state.queued.append(chunk)
            waiter.broadcast()
            return true
        }
        guard !queued else { return }
        let copier = CommitCopier(top: top, layers: layers, base: base, bufferSize: CommitCopier.mirrorChunkSize)
        defer { copier.deallocate() }
        var completion = Completion(chunk: chunk, error: nil)
        do { try copier.mirror(at: chunk.offset, length: chunk.length) } catch { completion.error = error }
        state.withLock { $0.completed.append(completion) }
    }

    /// Waits until a chunk in flight is done (returns at once when some
    /// are, or none is in flight), and returns every chunk done.
    func takeCompletions() -> [Completion] {
        state.withLock(when: { !$0.completed.isEmpty || $0.inFlight.isEmpty }) { state, _ in
            defer { state.completed.removeAll() }
            return state.completed
        }
    }

    /// Waits until no chunk is in flight (their completions stay to be
    /// taken): the job is pausing.
    func waitForAll() {
        state.withLock(when: { $0.inFlight.isEmpty }) { _, _ in }
    }

    /// Lets the chunks in flight finish, then ends the workers. The job's
    /// thread calls it before it returns in every case: nothing may write
    /// base once the job is over.
    func stop() {
        state.withLock { state, waiter in
            state.stopping = true
            waiter.broadcast()
        }
        state.withLock(when: { $0.workers == 0 }) { _, _ in }
    }

    private func work() {
        let copier = CommitCopier(top: top, layers: layers, base: base, bufferSize: CommitCopier.mirrorChunkSize)
        defer {
            copier.deallocate()
            state.withLock { state, waiter in
                state.workers -= 1
                waiter.broadcast()
            }
        }
        while true {
            let next = state.withLock(when: { !$0.queued.isEmpty || $0.stopping }) { state, _ -> Chunk? in
                state.queued.isEmpty ? nil : state.queued.removeFirst()
            }
            guard let chunk = next else { return }
            var completion = Completion(chunk: chunk, error: nil)
            do {
                try copier.mirror(at: chunk.offset, length: chunk.length) { write in
                    try writeTurn.withLock { (_: inout Void) in try write() }
                }
            } catch {
                completion.error = error
            }
            state.withLock { state, waiter in
                state.inFlight.removeAll { $0 == chunk }
                state.completed.append(completion)
                waiter.broadcast()
            }
        }
    }
}
