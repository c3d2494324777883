// Running NBD servers (`qcowkit nbd` and qemu-nbd 7.2, the oracle) on unix
// sockets in a scratch directory, and the clients we did not write: libnbd's
// nbdinfo, nbdcopy and its Python binding (python3-libnbd).
import Foundation
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A server process serving one image on a unix socket. Spawned with no
/// signal blocked (a test process's threads may block SIGTERM, and a child
/// inherits that mask: qemu-nbd would then never see the SIGTERM that stops it).
final class NBDServerProcess {
    let pid: pid_t
    let socket: String
    private let errorFile: String
    private var status: Int32?

    /// Starts `qcowkit nbd` (`qemu: false`) or qemu-nbd with `arguments`
    /// (the image last) listening on `socket`, and waits until it accepts.
    init(qemu: Bool, socket: String, arguments: [String], in directory: String) throws {
        self.socket = socket
        errorFile = socket + ".stderr"
        let command = (qemu ? [try TestTools.program("qemu-nbd", package: "qemu-utils")] : [try TestTools.qcowkit(), "nbd"])
            + ["-k", socket] + arguments
        pid = try Self.spawn(command, in: directory, standardError: errorFile)
        // Ready once the socket accepts; a server that exits instead failed.
        while !Self.accepts(socket) {
            if let status = reap(blocking: false) {
                throw NBDTestError("\(command.joined(separator: " ")) exited \(status): \(errors)")
            }
            usleep(20_000)
        }
    }

    var uri: String { "nbd+unix:///?socket=\(socket)" }
    func uri(export: String) -> String { "nbd+unix:///\(export)?socket=\(socket)" }
    var errors: String { (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? "" }

    /// Stops the server (SIGTERM) and returns its exit status and standard error.
    @discardableResult
    func stop() -> (status: Int32, errors: String) {
        if status == nil { kill(pid, SIGTERM) }
        return (waitForExit(), errors)
    }

    /// Waits for the server to exit by itself; its exit status (128 + signal if killed).
    func waitForExit() -> Int32 { reap(blocking: true)! }

    private func reap(blocking: Bool) -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        while true {
            let result = waitpid(pid, &raw, blocking ? 0 : WNOHANG)
            if result == -1 && errno == EINTR { continue }
            guard result == pid else { return nil }
            break
        }
        let code = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        status = code
        return code
    }

    deinit {
        if status == nil {
            kill(pid, SIGKILL)
            _ = reap(blocking: true)
        }
        unlink(errorFile)
    }

    static func spawn(_ command: [String], in directory: String, standardError: String) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, standardError, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Through sh for the working directory; the mask set here carries over.
        let line = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory] + command
        let argv = line.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, environ)
        guard result == 0 else { throw NBDTestError("cannot start \(command[0]): \(String(cString: strerror(result)))") }
        return pid
    }

    static func accepts(_ path: String) -> Bool {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }
}

struct NBDTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum NBDClients {
    /// NBD_CMD_CACHE over the export's first 4 MiB through libnbd; prints
    /// "cached" once the server has answered.
    static func cacheFirst4MiB(_ uri: String, in directory: String) throws -> String {
        try script("""
            import nbd, sys
            h = nbd.NBD()
            h.connect_uri(sys.argv[1])
            h.cache(4 * 1024 * 1024, 0)
            print("cached")
            h.shutdown()
            """, [uri], in: directory)
    }

    /// A python3 that can import libnbd's binding (Debian's, not a
    /// virtualenv's that lacks it).
    static func python() throws -> String {
        for candidate in ["/usr/bin/python3", try? TestTools.program("python3", package: "python3")] {
            guard let candidate else { continue }
            if let result = try? QemuOracle.run([candidate, "-c", "import nbd"], check: false), result.status == 0 {
                return candidate
            }
        }
        throw NBDTestError("no python3 can import nbd: install python3-libnbd")
    }

    /// Runs a libnbd Python script with `arguments`; its standard output.
    static func script(_ source: String, _ arguments: [String], in directory: String) throws -> String {
        let path = directory + "/script-\(UUID().uuidString).py"
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try QemuOracle.run([try python(), path] + arguments).output
    }

    static func nbdinfo(_ arguments: [String]) throws -> String {
        _ = try TestTools.program("nbdinfo", package: "libnbd-bin")
        return try QemuOracle.run(["nbdinfo"] + arguments).output
    }

    static func nbdcopy(_ arguments: [String]) throws {
        _ = try TestTools.program("nbdcopy", package: "libnbd-bin")
        try QemuOracle.run(["nbdcopy"] + arguments)
    }
}

/// qemu-nbd 7.2 and qcowkit installed as qemu-nbd (the same program name in
/// every message), run on the same command lines in one directory.
struct QemuNBDCommandLines {
    let directory: String

    init(in directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory + "/bin/qemu-nbd",
                                                   withDestinationPath: try TestTools.qcowkit())
    }

    /// Exit status and output of qemu-nbd, then of qcowkit, for `arguments`;
    /// `socket` is removed before each run. A server that wrongly starts is
    /// killed after 60 s, and its outcome differs.
    func outcomes(_ arguments: [String], socket: String) throws -> [String] {
        try ["qemu-nbd", directory + "/bin/qemu-nbd"].map { program in
            try? FileManager.default.removeItem(atPath: socket)
            // With the signals a shell would leave deliverable: the test
            // runner's threads block SIGTERM and children inherit that, and
            // qemu-nbd -c ends itself with SIGTERM.
            let unblocked = ["/usr/bin/python3", "-c",
                             "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])"]
            let run = try QemuOracle.run(["timeout", "-s", "KILL", "60"] + unblocked + [program] + arguments,
                                         in: URL(fileURLWithPath: directory), check: false)
            // getopt's messages and the "Try" line name argv[0] as given: ours
            // runs by its symlink's path where qemu-nbd runs as "qemu-nbd".
            return "status \(run.status)\n\(run.output)\(run.errorOutput)"
                .replacingOccurrences(of: directory + "/bin/qemu-nbd", with: "qemu-nbd")
        }
    }
}
