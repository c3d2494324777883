// A client's unix stream socket: connect(2) to a path, with QEMU's words
// for the failures (util/qemu-sockets.c's "Failed to connect to '...'").
// Used by `qemu-nbd -c` to reach its own server and by serve's client-mode
// chardevs (a test harness listening for the monitor).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

package enum UnixStreamSocket {
    package struct Failure: Error {
        package let message: String
    }

    /// Connects to the unix socket at `path`; the connected descriptor
    /// (close-on-exec, blocking).
    package static func connect(path: String) throws(Failure) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(message: "Failed to create socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw Failure(message: "UNIX socket path '\(path)' is too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        while true {
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if connected == 0 { return fd }
            let code = errno
            if code == EINTR { continue }
            close(fd)
            throw Failure(message: "Failed to connect to '\(path)': \(String(cString: strerror(code)))")
        }
    }
}
