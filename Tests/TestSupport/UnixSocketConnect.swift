// Connecting a test client to a unix socket: the one place tests do it.
// The descriptor is returned only once connected, so a client class stores
// it after the last point of failure: a class whose initializer closes its
// descriptor and then throws also runs its deinit, which closed the same
// number a second time, by then often another thread's new pipe (CI saw
// posix_spawn fail with EBADF that way).
import Foundation

public enum UnixSocketConnect {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public let errno: Int32
    }

    /// A connected stream socket (close-on-exec); the caller owns it.
    public static func connect(path: String) throws(Failure) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(Foundation.errno)", errno: Foundation.errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() where index < raw.count { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = Foundation.errno
            close(fd)
            throw Failure(description: "connect \(path): errno \(code)", errno: code)
        }
        return fd
    }
}
