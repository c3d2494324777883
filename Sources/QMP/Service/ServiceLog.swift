// Notes for the operator on standard error, prefixed like every qcowkit message.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum ServiceLog {
    static func note(_ text: String) {
        fputs("qcowkit: " + text + "\n", stderr)
    }
}
