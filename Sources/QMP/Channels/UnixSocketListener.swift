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
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let bytes = Array(path.utf8)
        // A path filling sun_path exactly, without a NUL, is valid on Linux
        // and QEMU accepts it; one byte more is refused with QEMU's words.
        guard bytes.count <= capacity else {
            throw QMPServiceError("UNIX socket path '\(path)' is too long\nPath must be less than \(capacity) bytes")
        }
        guard !bytes.isEmpty, !bytes.contains(0) else {
            throw QMPServiceError("UNIX socket path '\(path)' is invalid")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw QMPServiceError("Failed to create socket: \(errnoText())") }
        // Linux gives the socket file the socket inode's mode (less umask):
        // setting it before bind leaves no window with a wider mode.
        _ = fchmod(fd, 0o600)
        if unlink(path) < 0 && errno != ENOENT {
            let message = "Failed to unlink socket \(path): \(errnoText())"
            Glibc.close(fd)
            throw QMPServiceError(message)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let message = "Failed to bind socket to \(path): \(errnoText())"
            Glibc.close(fd)
            throw QMPServiceError(message)
        }
        _ = chmod(path, 0o600)
        guard listen(fd, 16) == 0 else {
            let message = "Failed to listen on socket: \(errnoText())"
            Glibc.close(fd)
            unlink(path)
            throw QMPServiceError(message)
        }
        self.fd = fd
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
