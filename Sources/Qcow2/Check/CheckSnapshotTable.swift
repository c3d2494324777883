// The snapshot table as the check reads it (qcow2_check_read_snapshot_table):
// with tolerance, since opening skipped it (SnapshotTable.readForRepair). A
// table too large to be QEMU's is an error; with `-r all` the overhanging
// snapshots and oversized extra data are dropped instead. Version 3 entries
// shorter than the 16 bytes of extra data every one must have are corruption.

extension Qcow2Checker {
    /// Every version 3 entry has at least the large VM state size and the disk size.
    static let requiredSnapshotExtraData: UInt32 = 16

    func readSnapshotTable(repair: CheckRepair, result: inout CheckResult, diagnostics: CheckDiagnostics) throws {
        func report(_ text: String) { diagnostics(CheckMessage(text)) }
        let fixing = repair.contains(.errors)
        snapshotTable = SnapshotTable()

        // Read from the file: what the header said on open may be stale.
        let pointer: [UInt8]
        do {
            pointer = try read(12, at: UInt64(Qcow2Header.FieldOffset.nbSnapshots))
        } catch let failure as CheckFailure {
            result.checkErrors += 1
            report("ERROR failed to read the snapshot table pointer from the image header: \(failure)")
            throw failure
        }
        var count = pointer.be(UInt32.self, at: 0)
        let snapshotsOffset = pointer.be(UInt64.self, at: 4)
        snapshotTable.offset = snapshotsOffset

        var reduced: UInt32 = 0
        if count > Qcow2Limits.maxSnapshots && fixing {
            report("Discarding \(count - Qcow2Limits.maxSnapshots) overhanging snapshots")
            reduced += count - Qcow2Limits.maxSnapshots
            count = Qcow2Limits.maxSnapshots
        }
        // QEMU's qcow2_validate_table: a size limit and an addressable,
        // cluster-aligned offset (no end-of-file check).
        let tableBytes = UInt64(count) * UInt64(SnapshotEntry.headerSize)
        var invalid: (message: String, errno: Int32)?
        if UInt64(count) > Qcow2Limits.maxSnapshots {
            invalid = ("snapshot table too large", CheckErrno.tooBig)
        } else if UInt64(Int64.max) - tableBytes < snapshotsOffset || geometry.offsetIntoCluster(snapshotsOffset) != 0 {
            invalid = ("snapshot table offset invalid", CheckErrno.invalid)
        }
        if let invalid {
            result.checkErrors += 1
            diagnostics(CheckMessage("ERROR \(invalid.message)", isErrorReport: true))
            if count > Qcow2Limits.maxSnapshots {
                report("You can force-remove all \(count - Qcow2Limits.maxSnapshots) overhanging snapshots with qcowkit check -r all")
            }
            snapshotTable.offset = 0
            throw CheckFailure(errno: invalid.errno)
        }

        var dropped = 0
        do {
            snapshotTable = try SnapshotTable.readForRepair(count: count, offset: snapshotsOffset, fixing: fixing) { length, offset in
                do {
                    return try read(length, at: offset)
                } catch let failure as CheckFailure {
                    throw SnapshotTableFailure(message: "Failed to read snapshot table: \(failure)", errno: failure.errno)
                }
            } repaired: { flaw in
                switch flaw {
                case let .extraDataTooLarge(entry, size):
                    report("Discarding too much extra metadata in snapshot table entry \(entry) "
                           + "(\(size) > \(Qcow2Limits.maxSnapshotExtraData))")
                    dropped += 1
                case let .tooBig(_, overhanging):
                    report("Discarding \(overhanging) overhanging snapshots (snapshot table is too big)")
                    reduced += UInt32(overhanging)
                }
            }
        } catch {
            let failure: SnapshotTableFailure
            switch error {
            case let error as SnapshotTableFailure:
                failure = error
            case let SnapshotTable.RepairReadFlaw.extraDataTooLarge(entry, _):
                failure = SnapshotTableFailure(message: "Too much extra metadata in snapshot table entry \(entry)",
                                               hint: "You can force-remove this extra metadata with qcowkit check -r all",
                                               errno: CheckErrno.tooBig)
            case let SnapshotTable.RepairReadFlaw.tooBig(_, overhanging):
                failure = SnapshotTableFailure(
                    message: "Snapshot table is too big",
                    hint: "You can force-remove all \(overhanging) overhanging snapshots with qcowkit check -r all",
                    errno: CheckErrno.tooBig)
            default:
                throw error
            }
            result.checkErrors += 1
            diagnostics(CheckMessage("ERROR failed to read the snapshot table: \(failure.message)", isErrorReport: true))
            if let hint = failure.hint { report(hint) }
            snapshotTable = SnapshotTable()
            throw CheckFailure(errno: failure.errno)
        }
        result.corruptions += Int(reduced) + dropped

        if reduced > 0 {
            // The header must say what the check will count from now on.
            let field = HeaderFieldUpdate.snapshotCount(UInt32(snapshotTable.entries.count))
            do {
                try write(field.bytes, at: field.offset)
                try flush()
            } catch let failure as CheckFailure {
                result.checkErrors += 1
                report("ERROR failed to update the snapshot count in the image header: \(failure)")
                throw failure
            }
            result.corruptionsFixed += Int(reduced)
            result.corruptions -= Int(reduced)
        }

        if header.version >= 3 {
            for (i, snapshot) in snapshotTable.entries.enumerated() where snapshot.extraDataSize < Self.requiredSnapshotExtraData {
                result.corruptions += 1
                report("\(fixing ? "Repairing" : "ERROR") snapshot table entry \(i) is incomplete")
            }
        }
    }

    struct SnapshotTableFailure: Error {
        var message: String
        var hint: String?
        var errno: Int32
    }
}
