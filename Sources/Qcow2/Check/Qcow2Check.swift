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

/// What the refcount pass of a check found, and whether the refcount
/// structure itself is broken (only a rebuild would help).
@dynamicMemberLookup
struct RefcountCheckOutcome {
    var result: CheckResult
    var rebuild: Bool

    subscript<T>(dynamicMember field: KeyPath<CheckResult, T>) -> T { result[keyPath: field] }
}

extension Qcow2Checker {
    /// The check without repairs, keeping the refcount pass's verdict on the
    /// structure; for the write path's tests.
    func checkRefcounts() throws -> RefcountCheckOutcome {
        var snapshotResult = CheckResult()
        try readSnapshotTable(repair: [], result: &snapshotResult, diagnostics: { _ in })
        let pass = try RefcountCheck(image: self, repair: [], diagnostics: { _ in })
        try pass.run()
        var result = pass.result
        result.add(snapshotResult, allocationInfo: false)
        return RefcountCheckOutcome(result: result, rebuild: pass.rebuild)
    }
}
