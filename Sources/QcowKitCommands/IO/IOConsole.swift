// Where qemu-io's output goes: results on standard output (buffered, since a
// `read -v` of a large range prints millions of lines), diagnostics on
// standard error. Tests hand in their own sinks to run commands in-process.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class IOConsole {
    private var pending: [UInt8] = []
    private let writeOutput: (UnsafeRawBufferPointer) -> Void
    private let writeError: (String) -> Void
    private static let flushThreshold = 64 << 10

    init(output: @escaping (UnsafeRawBufferPointer) -> Void, error: @escaping (String) -> Void) {
        writeOutput = output
        writeError = error
    }

    /// The process's standard output and error, through stdio.
    static func standard() -> IOConsole {
        IOConsole(output: { bytes in
            if let base = bytes.baseAddress { fwrite(base, 1, bytes.count, stdout) }
        }, error: { text in
            fflush(stdout)
            fputs(text, stderr)
        })
    }

    /// Appends `text` to standard output (no newline added).
    func out(_ text: String) {
        pending.append(contentsOf: text.utf8)
        if pending.count >= Self.flushThreshold { flush() }
    }

    func out(bytes: [UInt8]) {
        pending.append(contentsOf: bytes)
        if pending.count >= Self.flushThreshold { flush() }
    }

    /// Writes `line` and a newline to standard error, after what standard
    /// output holds so far (so a terminal shows both in order).
    func err(_ line: String) {
        flush()
        writeError(line + "\n")
    }

    func flush() {
        guard !pending.isEmpty else { return }
        pending.withUnsafeBytes { writeOutput($0) }
        pending.removeAll(keepingCapacity: true)
    }
}
