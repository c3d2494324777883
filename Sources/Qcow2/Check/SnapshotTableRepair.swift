// Writing the snapshot table again after `-r all` dropped or completed
// entries (qcow2_check_fix_snapshot_table): through the one replacement of
// the table (SnapshotTable.replace, shared with snapshot create and delete),
// with the check's side of it in CheckSnapshotTableStorage.swift.

extension Qcow2Checker {
    func fixSnapshotTable(repair: CheckRepair, result: inout CheckResult, diagnostics: CheckDiagnostics) throws {
        guard result.corruptions != 0, repair.contains(.errors) else { return }
        do {
            snapshotTable = try snapshotTable.replace(
                snapshotTable, virtualSize: header.size & ~511, in: self, tooBig: CheckFailure(errno: CheckErrno.tooBig))
        } catch let failure as CheckFailure {
            result.checkErrors += 1
            diagnostics(CheckMessage("ERROR failed to update snapshot table: \(failure)"))
            throw failure
        }
        result.corruptionsFixed += result.corruptions
        result.corruptions = 0
    }
}
