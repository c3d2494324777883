// The snapshot table as the check reads it (qcow2_check_read_snapshot_table):
// with tolerance, since opening skipped it. A table too large to be QEMU's is
// an error; with `-r all` the overhanging snapshots and oversized extra data
// are dropped instead. Version 3 entries shorter than the 16 bytes of extra
// data every one must have are corruption. Entries are SnapshotEntry values,
// the ID and name cut at their first NUL byte (QEMU keeps them as C strings,
// and writes them back so).

extension Qcow2Checker {
    /// Every version 3 entry has at least the large VM state size and the disk size.
    static let requiredSnapshotExtraData: UInt32 = 16

    func readSnapshotTable(repair: CheckRepair, result: inout CheckResult, diagnostics: CheckDiagnostics) throws {
        func report(_ text: String) { diagnostics(CheckMessage(text)) }
        let fixing = repair.contains(.errors)
        snapshots = []
        snapshotsSize = 0

        // Read from the file: what the header said on open may be stale.
        let pointer: [UInt8]
        do {
            pointer = try read(12, at: 60)
        } catch let failure as CheckFailure {
            result.checkErrors += 1
            report("ERROR failed to read the snapshot table pointer from the image header: \(failure)")
            throw failure
        }
        var count = pointer.be(UInt32.self, at: 0)
        snapshotsOffset = pointer.be(UInt64.self, at: 4)

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
            snapshotsOffset = 0
            throw CheckFailure(errno: invalid.errno)
        }

        var dropped = 0
        do {
            try readSnapshotEntries(count: count, fixing: fixing, reduced: &reduced, dropped: &dropped,
                                    diagnostics: diagnostics)
        } catch let failure as SnapshotTableFailure {
            result.checkErrors += 1
            diagnostics(CheckMessage("ERROR failed to read the snapshot table: \(failure.message)", isErrorReport: true))
            if let hint = failure.hint { report(hint) }
            snapshots = []
            snapshotsOffset = 0
            snapshotsSize = 0
            throw CheckFailure(errno: failure.errno)
        }
        result.corruptions += Int(reduced) + dropped

        if reduced > 0 {
            // The header must say what the check will count from now on.
            var field = [UInt8](repeating: 0, count: 4)
            field.setBE(UInt32(snapshots.count), at: 0)
            do {
                try write(field, at: 60)
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
            for (i, snapshot) in snapshots.enumerated() where snapshot.extraDataSize < Self.requiredSnapshotExtraData {
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

    /// Reads `count` entries from `snapshotsOffset` (qcow2_do_read_snapshots
    /// in repair mode when `fixing`), setting `snapshots` and `snapshotsSize`.
    private func readSnapshotEntries(count: UInt32, fixing: Bool, reduced: inout UInt32, dropped: inout Int,
                                     diagnostics: CheckDiagnostics) throws {
        func readTable(_ length: Int, at offset: UInt64) throws -> [UInt8] {
            do {
                return try read(length, at: offset)
            } catch let failure as CheckFailure {
                throw SnapshotTableFailure(message: "Failed to read snapshot table: \(failure)", errno: failure.errno)
            }
        }
        var offset = snapshotsOffset
        var tableLength: UInt64 = 0
        for i in 0..<Int(count) {
            let entryStart = offset
            tableLength = alignUp(tableLength, 8) ?? .max
            offset = alignUp(offset, 8) ?? .max
            let fixed = try readTable(SnapshotEntry.headerSize, at: offset)
            offset &+= UInt64(SnapshotEntry.headerSize)
            let idSize = UInt64(fixed.be(UInt16.self, at: 12))
            let nameSize = UInt64(fixed.be(UInt16.self, at: 14))
            var extraSize = fixed.be(UInt32.self, at: 36)

            let extraEnd = offset &+ UInt64(extraSize)
            if extraSize > Qcow2Limits.maxSnapshotExtraData {
                guard fixing else {
                    throw SnapshotTableFailure(
                        message: "Too much extra metadata in snapshot table entry \(i)",
                        hint: "You can force-remove this extra metadata with qcowkit check -r all",
                        errno: CheckErrno.tooBig)
                }
                diagnostics(CheckMessage("Discarding too much extra metadata in snapshot table entry \(i) "
                                         + "(\(extraSize) > \(Qcow2Limits.maxSnapshotExtraData))"))
                dropped += 1
                extraSize = Qcow2Limits.maxSnapshotExtraData
            }
            // The extra data as far as it is kept (the rest is skipped).
            let extra = try readTable(Int(extraSize), at: offset)
            offset = extraEnd
            let id = try readTable(Int(idSize), at: offset)
            offset &+= idSize
            let name = try readTable(Int(nameSize), at: offset)
            offset &+= nameSize

            tableLength += UInt64(SnapshotEntry.headerSize) + UInt64(extraSize) + idSize + nameSize
            if tableLength > Qcow2Limits.maxSnapshotTableBytes || offset &- snapshotsOffset > UInt64(Int32.max) {
                let overhanging = Int(count) - i
                guard fixing else {
                    throw SnapshotTableFailure(
                        message: "Snapshot table is too big",
                        hint: "You can force-remove all \(overhanging) overhanging snapshots with qcowkit check -r all",
                        errno: CheckErrno.tooBig)
                }
                diagnostics(CheckMessage("Discarding \(overhanging) overhanging snapshots (snapshot table is too big)"))
                reduced += UInt32(overhanging)
                offset = entryStart
                break
            }
            snapshots.append(SnapshotEntry(fixed: fixed, extraData: extra[...],
                                           idBytes: Array(id.prefix { $0 != 0 }),
                                           nameBytes: Array(name.prefix { $0 != 0 })))
        }
        snapshotsSize = offset &- snapshotsOffset
    }

}
