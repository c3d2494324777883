// The check's public entry: inside, a failure is an errno carrier
// (`CheckFailure`, QEMU's negative return); callers get the codec's error.

extension Qcow2Checker {
    /// Checks the image and repairs what `repair` allows (the image must be
    /// writable for any repair), reporting diagnostics as they are found.
    /// Throws `Qcow2Error.checkFailed(errno:)` when the check cannot
    /// complete (qemu-img's "Check failed: <strerror>"), or another
    /// `Qcow2Error` when the file cannot be read or written.
    public func check(repair: CheckRepair = [], diagnostics: @escaping CheckDiagnostics) throws -> CheckResult {
        do {
            return try runCheck(repair: repair, diagnostics: diagnostics)
        } catch let failure as CheckFailure {
            throw Qcow2Error.checkFailed(errno: failure.errno)
        }
    }
}
