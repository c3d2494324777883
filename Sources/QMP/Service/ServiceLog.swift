// Notes for the operator on standard error, prefixed like every qcowkit message.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum ServiceLog {
    static func note(_ text: String) {
        // Straight to the descriptor: unbuffered, as stderr is.
        let line = Array(("qcowkit: " + text + "\n").utf8)
        line.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
