// -pidfile / --pidfile, as QEMU 7.2's qemu_write_pidfile: the file created
// with mode 0600, write-locked (a second daemon on the same file fails with
// "Cannot lock pid file"), checked to still be the file at the path after
// locking, truncated, "PID\n" written; held open and locked while the service
// runs, and removed at exit. Harnesses (iotests' QemuStorageDaemon) wait for
// it to appear; it is written where qemu-storage-daemon writes it, after the
// block devices and exports, before any monitor client is greeted.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class PIDFile {
    private let path: String
    private var fd: Int32

    /// Errors in QEMU's words, with its "cannot create PID file: " prefix.
    init(path: String) throws {
        func failure(_ text: String, _ code: Int32) -> QMPServiceError {
            QMPServiceError("cannot create PID file: \(text): \(String(cString: strerror(code)))")
        }
        while true {
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw failure("Could not create '\(path)'", errno) }
            var opened = stat()
            guard fstat(fd, &opened) == 0 else {
                let code = errno
                close(fd)
                throw failure("Cannot stat file", code)
            }
            var lock = flock()
            lock.l_type = Int16(F_WRLCK)
            lock.l_whence = Int16(SEEK_SET)
            guard fcntl(fd, F_SETLK, &lock) == 0 else {
                let code = errno
                close(fd)
                throw failure("Cannot lock pid file", code)
            }
            // Another daemon may have removed and recreated the file between
            // our open and our lock: lock the file that is at the path.
            var current = stat()
            if stat(path, &current) != 0 || current.st_ino != opened.st_ino || current.st_dev != opened.st_dev {
                close(fd)
                continue
            }
            guard ftruncate(fd, 0) == 0 else {
                let code = errno
                close(fd)
                throw failure("Failed to truncate pid file", code)
            }
            let text = Array("\(getpid())\n".utf8)
            guard text.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == text.count else {
                close(fd)
                throw QMPServiceError("cannot create PID file: Failed to write pid file")
            }
            self.fd = fd
            // Removed by the name it resolves to now, as qemu-storage-daemon
            // does (a relative path stays right if the directory changes).
            if let resolved = realpath(path, nil) {
                self.path = String(cString: resolved)
                free(resolved)
            } else {
                self.path = path
            }
            return
        }
    }

    /// Removes the file and lets go of the lock.
    func remove() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    deinit { remove() }
}
