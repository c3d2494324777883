// The whole check of a qcow2 image, in QEMU's order (qcow2_co_check_locked):
// the snapshot table first (the refcount pass needs its snapshots), then the
// refcount pass, then the snapshot table's repair; a repair that leaves no
// corruption clears the dirty and corrupt bits.

extension Qcow2Checker {
    /// The check behind `check(repair:diagnostics:)`; throws `CheckFailure`
    /// when the check cannot complete.
    func runCheck(repair: CheckRepair, diagnostics: @escaping CheckDiagnostics) throws -> CheckResult {
        // Repairs need an image opened writable (EROFS otherwise).
        guard repair.isEmpty || isWritable else { throw CheckFailure(errno: CheckErrno.readOnly) }
        guard !isUnusable else { throw CheckFailure(errno: CheckErrno.noMedium) }
        reporter = diagnostics
        defer { reporter = { _ in } }
        var result = CheckResult()
        var snapshotResult = CheckResult()
        try readSnapshotTable(repair: repair, result: &snapshotResult, diagnostics: diagnostics)

        let pass = try RefcountCheck(image: self, repair: repair, diagnostics: diagnostics)
        try pass.run()
        result.add(pass.result, allocationInfo: true)
        try fixSnapshotTable(repair: repair, result: &snapshotResult, diagnostics: diagnostics)
        result.add(snapshotResult, allocationInfo: false)

        if !repair.isEmpty && result.checkErrors == 0 && result.corruptions == 0 {
            try clearIncompatibleFeature(.dirty)
            try clearIncompatibleFeature(.corrupt)
        }
        return result
    }
}
