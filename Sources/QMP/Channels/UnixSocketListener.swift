// A listening unix socket: created with mode 0600 (only the owner may
// connect: a monitor can open and rewrite images), a stale socket file at the
// path replaced as QEMU does, the file removed again on close. Every
// connection is a client of its own (QEMU's socket chardev takes one at a
// time; several at once costs nothing here).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NBD

final class UnixSocketListener {
    let path: String
    private let fd: Int32
    private let loop: MainLoop
    private var watch: MainLoop.Source?
    private var retry: MainLoop.Source?
    private var isClosed = false

    /// Binds and listens; the error texts are QEMU's where it has one.
    init(path: String, loop: MainLoop) throws {
        self.path = path
        self.loop = loop
        do {
            fd = try UnixListeningSocket.bind(path: path, backlog: 16)
        } catch {
            throw QMPServiceError(error.message)
        }
    }

    /// Accepts connections from the loop, handing each to `handler`.
    func start(_ handler: @escaping (Connection) -> Void) {
        setNonBlocking(fd)
        watch = loop.watch(fd: fd, for: .readable) { [weak self] _ in
            guard let self, !self.isClosed else { return false }
            while let connection = self.accept() { handler(connection) }
            // Out of descriptors: the pending client stays queued and the
            // socket stays readable; look again later instead of spinning.
            if errno == EMFILE || errno == ENFILE {
                self.watch = nil
                self.retry = self.loop.after(milliseconds: 100) { [weak self] in
                    guard let self, !self.isClosed else { return }
                    self.retry = nil
                    self.start(handler)
                }
                return false
            }
            return true
        }
    }

    /// The next pending connection, if any.
    private func accept() -> Connection? {
        while true {
            let client = Glibc.accept(fd, nil, nil)
            if client >= 0 {
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                setNonBlocking(client)
                return Connection(loop: loop, inputFD: client, outputFD: client, isSocket: true, ownsFDs: true)
            }
            if errno == EINTR { continue }
            return nil
        }
    }

    /// Stops listening and removes the socket file.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        watch?.cancel()
        watch = nil
        retry?.cancel()
        retry = nil
        Glibc.close(fd)
        unlink(path)
    }

    deinit { close() }
}

func setNonBlocking(_ fd: Int32) {
    let flags = fcntl(fd, F_GETFL)
    if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
}

func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
