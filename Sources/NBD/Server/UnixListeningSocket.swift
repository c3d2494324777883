// Binding a listening unix socket, QEMU's way (socket_listen for a unix
// address), for every listener in the package: NBD's and QMP's monitor.
// The path must fit sun_path (filling it exactly, without a NUL, is valid on
// Linux and QEMU accepts it); the socket gets mode 0600 before bind, so the
// file is never wider (only the owner may connect: a client can open and
// rewrite images); a stale file at the path is replaced.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

package enum UnixListeningSocket {
    /// A failure in QEMU's words (the caller wraps it in its own error).
    package struct Failure: Error {
        package let message: String
    }

    /// Binds and listens at `path`; returns the listening descriptor
    /// (close-on-exec, blocking).
    package static func bind(path: String, backlog: Int32) throws(Failure) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count <= capacity else {
            throw Failure(message: "UNIX socket path '\(path)' is too long\nPath must be less than \(capacity) bytes")
        }
        guard !bytes.isEmpty, !bytes.contains(0) else { throw Failure(message: "UNIX socket path '\(path)' is invalid") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw systemFailure("Failed to create socket") }
        _ = fchmod(fd, 0o600)
        if unlink(path) != 0 && errno != ENOENT {
            let failure = systemFailure("Failed to unlink socket \(path)")
            Glibc.close(fd)
            throw failure
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let failure = systemFailure("Failed to bind socket to \(path)")
            Glibc.close(fd)
            throw failure
        }
        _ = chmod(path, 0o600)
        guard Glibc.listen(fd, backlog) == 0 else {
            let failure = systemFailure("Failed to listen on socket")
            Glibc.close(fd)
            _ = unlink(path)
            throw failure
        }
        return fd
    }

    private static func systemFailure(_ what: String) -> Failure {
        Failure(message: "\(what): \(String(cString: strerror(errno)))")
    }
}
