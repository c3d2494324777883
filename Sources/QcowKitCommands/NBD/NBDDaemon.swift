// Running in the background as qemu-nbd does: --fork (the parent waits for
// the child to be serving, copying its error messages, and exits 1 if there
// were any), --pid-file, and termination: SIGTERM, SIGINT and SIGHUP end the
// server cleanly (exit status 0), as does the last client's departure
// without -t.
import BlockGraph
import Qcow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The child's side of --fork, until it is serving.
struct NBDDaemon {
    /// The parent's standard error, restored once the child serves.
    private let savedStandardError: Int32

    /// Forks. The parent copies what the child writes to standard error
    /// until the child is serving (or fails), then exits: 0 if nothing was
    /// written, 1 otherwise. The child returns, detached from the terminal.
    static func fork() throws -> NBDDaemon {
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else {
            throw CommandFailure("Error setting up communication pipe: \(String(cString: strerror(errno)))")
        }
        let pid = Glibc.fork()
        if pid < 0 { throw CommandFailure("Failed to fork: \(String(cString: strerror(errno)))") }
        if pid > 0 {
            Glibc.close(pipe[1])
            var errors = false
            var buffer = [UInt8](repeating: 0, count: 1024)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(pipe[0], $0.baseAddress, 1024) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                errors = true
                _ = buffer.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, count) }
            }
            Glibc.exit(errors ? 1 : 0)
        }
        Glibc.close(pipe[0])
        let saved = dup(STDERR_FILENO)
        _ = setsid()
        let null = open("/dev/null", O_RDWR)
        if null >= 0 {
            dup2(null, STDIN_FILENO)
            dup2(null, STDOUT_FILENO)
            if null > STDERR_FILENO { Glibc.close(null) }
        }
        dup2(pipe[1], STDERR_FILENO)
        Glibc.close(pipe[1])
        return NBDDaemon(savedStandardError: saved)
    }

    /// The child serves: the parent's pipe closes (and the parent exits 0).
    func detach() {
        dup2(savedStandardError, STDERR_FILENO)
        Glibc.close(savedStandardError)
    }

    /// Writes the process id to `path` (qemu_write_pidfile).
    static func writePIDFile(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CommandFailure("Cannot open pid file: \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        let text = Array("\(getpid())\n".utf8)
        guard write(fd, text, text.count) == text.count else {
            throw CommandFailure("Failed to write pid file: \(String(cString: strerror(errno)))")
        }
    }
}

/// Waits for the end of serving: a termination signal, or (without -t)
/// the last client that reached transmission leaving. The signals are
/// blocked in every thread (set before any is started) and taken by a
/// thread of their own with sigwait.
final class TerminationSignals: Sendable {
    private let state = JobLock(false)

    init() {
        var set = Self.signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        _ = spawnWorkerThread { [self] in
            var set = Self.signalSet()
            var signal: Int32 = 0
            while sigwait(&set, &signal) != 0 {}
            terminate()
        }
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, signal) }
        return set
    }

    func clientLeft() { terminate() }

    func terminate() {
        state.withLock { done, waiter in
            done = true
            waiter.broadcast()
        }
    }

    func waitForTermination() {
        state.withLock(when: { $0 }) { _, _ in }
    }
}
