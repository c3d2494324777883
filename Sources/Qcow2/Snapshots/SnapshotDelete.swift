// Deleting an internal snapshot (QEMU 7.2's qcow2_snapshot_delete):
//  1. the snapshot table without the entry replaces the old one: from here
//     on the snapshot is gone, whatever happens next;
//  2. every cluster its tree references loses a reference; clusters only
//     it used are freed and discarded in the file;
//  3. its L1 table is freed;
//  4. the active tree's COPIED flags are set where a refcount fell to 1.
// A failure after step 1 leaks clusters at worst, as in QEMU.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// Deletes the first snapshot matching `id` and/or `name`.
    func deleteSnapshot(id: String?, name: String?) throws {
        guard let index = snapshots.index(id: id, name: name) else { throw SnapshotError.notFound }
        let snapshot = snapshots.entries[index]
        try validateSnapshotL1Table(snapshot)

        var table = snapshots
        table.entries.remove(at: index)
        try step("Failed to remove snapshot from snapshot list") { try writeSnapshotTable(table) }
        try step("Failed to free the cluster and L1 table") {
            try updateSnapshotRefcount(l1Offset: snapshot.l1TableOffset, l1Size: Int(snapshot.l1Size), addend: -1)
        }
        freeClusters(offset: snapshot.l1TableOffset, length: UInt64(snapshot.l1Size) * 8, type: .snapshot)
        try step("Failed to update snapshot status in disk") {
            try updateSnapshotRefcount(l1Offset: header.l1TableOffset, l1Size: map.l1.count, addend: 0)
        }
    }

    /// QEMU's qcow2_validate_table for a snapshot's L1 table, before it is
    /// used: no larger than an active L1 table may be, and cluster aligned.
    func validateSnapshotL1Table(_ snapshot: SnapshotEntry) throws {
        try HeaderValidation.validateTable(
            "Snapshot L1 table", offset: snapshot.l1TableOffset, entries: UInt64(snapshot.l1Size), entrySize: 8,
            maxBytes: Qcow2Limits.maxL1TableBytes, clusterSize: clusterSize, fileSize: 0, qemuChecksOnly: true)
    }

    /// Runs one step of a delete; its failure carries QEMU's message for it.
    private func step(_ message: String, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as SnapshotError {
            throw error
        } catch let error as Qcow2Error {
            // Broken metadata marks the image corrupt, as in any write.
            if case let .corruptMetadata(why) = error { _ = signalCorruption(why) }
            throw SnapshotError.deleteStep(message, errno: Qcow2Error.errnoValue(of: error))
        } catch is FileTooLarge {
            throw SnapshotError.deleteStep(message, errno: EFBIG)
        } catch {
            throw SnapshotError.deleteStep(message, errno: EIO)
        }
    }
}
