// Files the targets that open images write their input to. They live in one
// directory per fuzzer process on tmpfs (/dev/shm when it exists), so that an
// iteration costs no disk I/O; each iteration replaces the files it needs and
// the directory is removed when the process exits.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public final class ScratchFiles {
    public let directory: String

    /// The process's scratch directory (created on first use).
    public static let shared = ScratchFiles()

    private init() {
        let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        // The pid in the name lets Scripts/fuzz.sh remove what a crashed run left.
        var template = Array("\(base)/qcowkit-fuzz-\(getpid())-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard made != nil else { fatalError("cannot create a scratch directory under \(base)") }
        directory = String(cString: template)
        ScratchFiles.registered = directory
        atexit {
            // Only the files `write` made are there; then the directory goes.
            guard let dir = ScratchFiles.registered else { return }
            for name in ScratchFiles.written { unlink(dir + "/" + name) }
            rmdir(dir)
        }
    }

    // Read by the atexit handler, which can capture nothing; fuzzing is single-threaded.
    nonisolated(unsafe) private static var registered: String?
    nonisolated(unsafe) private static var written: Set<String> = []

    public func path(_ name: String) -> String { directory + "/" + name }

    /// Writes `bytes` to `name` in the scratch directory, replacing it.
    @discardableResult
    public func write(_ name: String, _ bytes: [UInt8]) -> String {
        let path = self.path(name)
        ScratchFiles.written.insert(name)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fatalError("cannot write \(path): errno \(errno)") }
        defer { close(fd) }
        var done = 0
        bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                if n <= 0 { fatalError("cannot write \(path): errno \(errno)") }
                done += n
            }
        }
        return path
    }

    /// Removes `name` if it exists.
    public func remove(_ name: String) {
        unlink(path(name))
    }
}
