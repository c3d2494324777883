// One client's byte stream: input from one fd, output to another (the same
// fd for a socket; stdin and stdout for stdio). Input arrives through the
// main loop in chunks; output is queued and written as the peer accepts it.
// While too much output is queued (a client that sends but does not read),
// input is not read: the client's own flood is answered at its own pace and
// memory stays bounded.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class Connection {
    /// Receives each chunk read, then nil once at the end of input.
    var onInput: (([UInt8]?) -> Void)?
    /// Called once when the connection is gone (peer closed, error, or close()).
    var onClose: (() -> Void)?

    private let loop: MainLoop
    private let inputFD: Int32
    private let outputFD: Int32
    private let ownsFDs: Bool
    private let isSocket: Bool
    private var readWatch: MainLoop.Source?
    private var writeWatch: MainLoop.Source?
    private var pending: [UInt8] = []
    private var pendingStart = 0
    private(set) var isClosed = false
    private var inputEnded = false

    /// Above this much queued output, input is no longer read.
    static let outputHighWater = 1 << 20
    /// A client this far behind (events keep coming while it never reads)
    /// is dropped rather than buffered for without end.
    static let outputLimit = 64 << 20
    static let readChunk = 8 << 10

    /// `isSocket`: the fds are one non-blocking socket, written with send()
    /// (no SIGPIPE). Otherwise blocking fds (stdio), written with write().
    init(loop: MainLoop, inputFD: Int32, outputFD: Int32, isSocket: Bool, ownsFDs: Bool) {
        self.loop = loop
        self.inputFD = inputFD
        self.outputFD = outputFD
        self.isSocket = isSocket
        self.ownsFDs = ownsFDs
    }

    func start() { updateReadWatch() }

    var queuedOutput: Int { pending.count - pendingStart }

    func send(_ bytes: [UInt8]) {
        guard !isClosed, !bytes.isEmpty else { return }
        // Checked before the copy: a reply that alone passes the limit
        // (a huge id echoed back) is not buffered a second time.
        if queuedOutput + bytes.count > Self.outputLimit {
            close()
            return
        }
        if queuedOutput == 0 {
            pending.removeAll(keepingCapacity: true)
            pendingStart = 0
        }
        pending += bytes
        flush()
    }

    /// Writes as much queued output as the peer takes now.
    private func flush() {
        while !isClosed && queuedOutput > 0 {
            let written = pending.withUnsafeBytes { buffer -> Int in
                let base = buffer.baseAddress! + pendingStart
                return isSocket ? Glibc.send(outputFD, base, queuedOutput, Int32(MSG_NOSIGNAL))
                                : Glibc.write(outputFD, base, queuedOutput)
            }
            if written > 0 {
                pendingStart += written
                continue
            }
            if written < 0 && errno == EINTR { continue }
            if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if writeWatch == nil {
                    writeWatch = loop.watch(fd: outputFD, for: .writable) { [weak self] _ in
                        guard let self else { return false }
                        self.writeWatch = nil
                        self.flush()
                        return false
                    }
                }
                updateReadWatch()
                return
            }
            // EPIPE, ECONNRESET, ...: the peer is gone.
            close()
            return
        }
        if queuedOutput == 0 {
            pending.removeAll(keepingCapacity: pending.capacity <= 1 << 16)
            pendingStart = 0
        } else if pendingStart > 1 << 16 && pendingStart > pending.count / 2 {
            pending.removeSubrange(0..<pendingStart)
            pendingStart = 0
        }
        updateReadWatch()
    }

    /// Reads while output is not backed up and input has not ended.
    private func updateReadWatch() {
        let wanted = !isClosed && !inputEnded && queuedOutput < Self.outputHighWater
        if wanted && readWatch == nil {
            readWatch = loop.watch(fd: inputFD, for: .readable) { [weak self] _ in
                self?.readAvailable() ?? false
            }
        } else if !wanted, let watch = readWatch {
            readWatch = nil
            watch.cancel()
        }
    }

    private func readAvailable() -> Bool {
        var buffer = [UInt8](repeating: 0, count: Self.readChunk)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(inputFD, $0.baseAddress, $0.count) }
        if count < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) { return true }
        guard count > 0 else {
            endInput()
            return false
        }
        onInput?(Array(buffer[0..<count]))
        // The handler may have closed us or backed up our output.
        if isClosed || inputEnded { return false }
        if queuedOutput >= Self.outputHighWater {
            readWatch = nil
            return false
        }
        return true
    }

    private func endInput() {
        readWatch = nil
        inputEnded = true
        onInput?(nil)
        // A socket whose peer stopped sending is done; stdio keeps its output
        // (stdout may outlive stdin, as QEMU's stdio chardev allows).
        if isSocket { close() }
    }

    /// Tries for up to `milliseconds` to hand queued output to the peer
    /// (shutdown: the last replies and SHUTDOWN should reach the client).
    /// Returns the time left.
    @discardableResult
    func drain(milliseconds: Int32) -> Int32 {
        var remaining = milliseconds
        while !isClosed && queuedOutput > 0 && remaining > 0 {
            var fd = pollfd(fd: outputFD, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&fd, 1, 10)
            remaining -= 10
            if ready > 0 { flush() }
        }
        return remaining
    }

    /// Waits up to `milliseconds` for a socket's peer to hang up, reading
    /// and dropping what it still sends; returns the time left. A client
    /// that reads quit's reply and then disconnects sees its own close, not
    /// ours, as with QEMU (which takes longer to exit).
    @discardableResult
    func lingerUntilPeerCloses(milliseconds: Int32) -> Int32 {
        guard isSocket else { return milliseconds }
        var remaining = milliseconds
        var scratch = [UInt8](repeating: 0, count: 4096)
        while !isClosed && remaining > 0 {
            var fd = pollfd(fd: inputFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&fd, 1, 10)
            remaining -= 10
            guard ready > 0 else { continue }
            let count = scratch.withUnsafeMutableBytes { Glibc.read(inputFD, $0.baseAddress, $0.count) }
            if count == 0 || (count < 0 && errno != EINTR && errno != EAGAIN) { break }
        }
        return remaining
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        readWatch?.cancel(); readWatch = nil
        writeWatch?.cancel(); writeWatch = nil
        pending = []
        pendingStart = 0
        if ownsFDs {
            Glibc.close(inputFD)
            if outputFD != inputFD { Glibc.close(outputFD) }
        }
        let handler = onClose
        onClose = nil
        onInput = nil
        handler?()
    }
}
