// Listening sockets: a unix socket at a path (mode 0600, a stale file there
// replaced, removed again when the listener closes), TCP on the addresses a
// host name resolves to, or a socket handed over already listening.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// Where an `NBDServer` listens.
public enum NBDListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// A unix socket file, created with mode 0600.
    case unix(path: String)
    /// TCP on every address `host` resolves to ("0.0.0.0", "::", "localhost",
    /// ...); port 0 lets the system choose.
    case inet(host: String, port: UInt16)
    /// A socket that is already listening (systemd's LISTEN_FDS).
    case descriptor(Int32)

    public var description: String {
        switch self {
        case let .unix(path): return path
        case let .inet(host, port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case let .descriptor(fd): return "fd \(fd)"
        }
    }
}

/// One listening socket.
final class ListeningSocket: Sendable {
    let descriptor: Int32
    let address: NBDListenAddress
    private let unlinkPath: String?
    private let shut = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)

    private init(descriptor: Int32, address: NBDListenAddress, unlinkPath: String?) {
        self.descriptor = descriptor
        self.address = address
        self.unlinkPath = unlinkPath
    }

    var isShut: Bool { shut.load(ordering: .acquiring) }

    /// Accepts one client; nil on failure (the caller checks `isShut`).
    func accept() -> Int32? {
        let fd = Glibc.accept(descriptor, nil, nil)
        if fd >= 0 {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            return fd
        }
        if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
            usleep(100_000)  // out of descriptors: let clients leave rather than spin
        }
        return nil
    }

    /// Wakes a thread blocked in `accept` and makes later accepts fail.
    func shutdown() {
        shut.store(true, ordering: .releasing)
        _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR))
    }

    func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = Glibc.close(descriptor)
        if let unlinkPath { _ = unlink(unlinkPath) }
    }

    // MARK: Opening

    static func open(_ address: NBDListenAddress, backlog: Int32) throws -> [ListeningSocket] {
        switch address {
        case let .unix(path): return [try openUnix(path, backlog: backlog)]
        case let .inet(host, port): return try openInet(host: host, port: port, backlog: backlog)
        case let .descriptor(fd): return [ListeningSocket(descriptor: fd, address: address, unlinkPath: nil)]
        }
    }

    private static func openUnix(_ path: String, backlog: Int32) throws -> ListeningSocket {
        let fd: Int32
        do {
            fd = try UnixListeningSocket.bind(path: path, backlog: backlog)
        } catch {
            throw NBDServerError(error.message)
        }
        return ListeningSocket(descriptor: fd, address: .unix(path: path), unlinkPath: path)
    }

    private static func openInet(host: String, port: UInt16, backlog: Int32) throws -> [ListeningSocket] {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_ADDRCONFIG
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let found = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &list)
        guard found == 0, let list else {
            throw NBDServerError("address resolution failed for \(host):\(port): \(String(cString: gai_strerror(found)))")
        }
        defer { freeaddrinfo(list) }
        var sockets: [ListeningSocket] = []
        var lastError: NBDServerError?
        var chosenPort = port
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let info = entry {
            entry = info.pointee.ai_next
            if chosenPort != port { setPort(info.pointee.ai_addr, chosenPort) }
            do {
                let socket = try bindInet(info.pointee, host: host, backlog: backlog)
                if case let .inet(_, bound) = socket.address { chosenPort = bound }
                sockets.append(socket)
            } catch let error as NBDServerError {
                lastError = error
            }
        }
        guard !sockets.isEmpty else { throw lastError ?? NBDServerError("Failed to find an available port") }
        return sockets
    }

    private static func bindInet(_ info: addrinfo, host: String, backlog: Int32) throws -> ListeningSocket {
        let fd = socket(info.ai_family, info.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.ai_protocol)
        guard fd >= 0 else { throw systemError("Failed to create socket") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if info.ai_family == AF_INET6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        guard bind(fd, info.ai_addr, info.ai_addrlen) == 0 else {
            let error = systemError("Failed to bind socket")
            Glibc.close(fd)
            throw error
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let error = systemError("Failed to listen on socket")
            Glibc.close(fd)
            throw error
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let port = withUnsafePointer(to: &storage) { pointer -> UInt16 in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Self.port(of: $0) }
        }
        return ListeningSocket(descriptor: fd, address: .inet(host: host, port: port), unlinkPath: nil)
    }

    private static func port(of address: UnsafePointer<sockaddr>) -> UInt16 {
        if address.pointee.sa_family == sa_family_t(AF_INET6) {
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
        }
        return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
    }

    /// Uses the port the first socket got for the others (port 0 asked).
    private static func setPort(_ address: UnsafeMutablePointer<sockaddr>?, _ port: UInt16) {
        guard let address else { return }
        if address.pointee.sa_family == sa_family_t(AF_INET6) {
            address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port = port.bigEndian }
        } else {
            address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = port.bigEndian }
        }
    }

    private static func systemError(_ what: String) -> NBDServerError {
        NBDServerError("\(what): \(String(cString: strerror(errno)))")
    }
}
