// The CLI verbs the targets run print to standard output and standard error,
// where libFuzzer reports; the targets send that output to /dev/null.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum StandardStreams {
    /// Points standard output at /dev/null for the rest of the run (from
    /// LLVMFuzzerInitialize).
    public static func silenceOutput() {
        let null = open("/dev/null", O_WRONLY)
        if null >= 0 { dup2(null, STDOUT_FILENO); close(null) }
    }

    /// Runs `body` with standard error pointed at /dev/null.
    public static func withErrorSilenced(_ body: () -> Void) {
        fflush(stderr)
        let saved = dup(STDERR_FILENO)
        let null = open("/dev/null", O_WRONLY)
        if null >= 0 { dup2(null, STDERR_FILENO); close(null) }
        body()
        fflush(stderr)
        if saved >= 0 { dup2(saved, STDERR_FILENO); close(saved) }
    }
}
