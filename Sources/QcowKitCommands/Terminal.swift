// Buffered standard output and unbuffered standard error, without Foundation
// (start-up time matters for small commands).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum Terminal {
    /// Writes `text` to standard output (stdio-buffered).
    public static func print(_ text: String, terminator: String = "\n") {
        fputs(text, stdout)
        fputs(terminator, stdout)
    }

    public static func printError(_ text: String) {
        fflush(stdout)
        fputs(text + "\n", stderr)
    }

    public static func flushStandardOutput() { fflush(stdout) }

    public static func exit(_ status: Int32) -> Never {
        fflush(stdout)
        Glibc.exit(status)
    }
}
