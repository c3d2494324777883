// The handshake limit (QEMU's handshake_max_secs, the timer that
// nbd_co_client_start arms): a client that has not reached transmission
// within the limit after it was accepted has its socket shut down, which
// fails whatever read or write its negotiation is blocked in, plain or TLS.
// The limit is on the whole handshake, not on each read, so a client that
// trickles a byte at a time is dropped too. One thread per server watches
// every client's deadline.
import BlockGraph

final class HandshakeDeadlines: Sendable {
    private struct Entry {
        var deadline: UInt64
        var transport: SocketTransport
    }

    private struct State {
        var running = true
        var entries: [ObjectIdentifier: Entry] = [:]
        /// Bumped by every new entry, so the watcher re-reads the earliest deadline.
        var generation = 0
    }

    private let state = JobLock(State())
    private let limit: UInt64

    init(seconds: Int) {
        limit = UInt64(seconds) * 1_000_000_000
    }

    /// Arms `client`'s deadline (at accept).
    func arm(_ client: ClientConnection) {
        state.withLock { state, waiter in
            state.entries[ObjectIdentifier(client)] = Entry(deadline: monotonicNanoseconds() + limit,
                                                            transport: client.transport)
            state.generation += 1
            waiter.broadcast()
        }
    }

    /// Disarms it (negotiation over, either way).
    func disarm(_ client: ClientConnection) {
        state.withLock { state in state.entries[ObjectIdentifier(client)] = nil }
    }

    /// Ends the watcher thread.
    func stop() {
        state.withLock { state, waiter in
            state.running = false
            waiter.broadcast()
        }
    }

    /// The watcher: sleeps until the earliest deadline (or a new entry, or
    /// stop), then shuts down every client whose deadline has passed.
    func watch() {
        while true {
            let (running, generation, earliest) = state.withLock { state in
                (state.running, state.generation, state.entries.values.map(\.deadline).min())
            }
            guard running else { return }
            state.withLock(when: { !$0.running || $0.generation != generation }, until: earliest ?? .max) { _, _ in }
            let now = monotonicNanoseconds()
            state.withLock { state in
                for (key, entry) in state.entries where entry.deadline <= now {
                    entry.transport.shutdown()
                    state.entries[key] = nil
                }
            }
        }
    }
}
