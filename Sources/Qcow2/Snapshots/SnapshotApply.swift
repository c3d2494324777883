// Reverting the active state to a snapshot (QEMU 7.2's qcow2_snapshot_goto):
//  1. a snapshot taken at another disk size resizes the image first
//     (qcow2_co_truncate: grown, or shrunk as `resize --shrink` does);
//  2. the active L1 table grows (exactly) to hold the snapshot's;
//  3. every cluster the snapshot's tree references gains a reference (and
//     its L1 copy loses stale COPIED flags), all flushed;
//  4. the snapshot's L1 entries, padded with zeroes, overwrite the active
//     L1 table in place (synced): from here on the image is the snapshot;
//  5. the old active tree loses its references (walked from the in-memory
//     table, which is still the old one); clusters only it used are freed;
//  6. COPIED flags are set where the snapshot's clusters are now owned by
//     the active tree alone.
// A crash before step 4 leaks references; after it, the old tree's clusters.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// Makes the snapshot with ID (or else name) `idOrName` the active state.
    func applySnapshot(idOrName: String, lock: borrowing HeldMetadataLock) throws {
        guard let index = snapshots.index(idOrName: idOrName) else { throw SnapshotError.notFound }
        let snapshot = snapshots.entries[index]
        do {
            try validateSnapshotL1Table(snapshot)
        } catch let error as Qcow2Error {
            // QEMU reports the table's flaw, then fails with its errno.
            image.report(Qcow2Diagnostic(.errorReport, error.description))
            if case .tableTooLarge = error { throw FileTooLarge() }
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: error.description)
        }

        let diskSize = snapshot.diskSize ?? imageSize
        if diskSize != imageSize {
            // qcow2_co_truncate's refusal, reported before the apply fails.
            guard version >= 3 else {
                let message = "Can't resize a v2 image which has snapshots"
                image.report(Qcow2Diagnostic(.errorReport, message))
                throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: message)
            }
            if diskSize < imageSize {
                try shrink(to: diskSize)
            } else {
                try grow(to: diskSize, preallocation: .off, lock: lock)
            }
            image.stored.withLock { $0.header.size = diskSize }
        }

        try growL1Table(minEntries: UInt64(snapshot.l1Size), exact: true)
        let activeSize = map.l1.count
        var newL1 = try readL1Table(at: snapshot.l1TableOffset, entries: Int(snapshot.l1Size))
        newL1 += [UInt64](repeating: 0, count: activeSize - newL1.count)

        try updateSnapshotRefcount(l1Offset: snapshot.l1TableOffset, l1Size: Int(snapshot.l1Size), addend: 1)
        try checkOverlap(offset: header.l1TableOffset, length: UInt64(activeSize) * 8, ignoring: [.activeL1])
        var encoded = [UInt8](repeating: 0, count: activeSize * 8)
        for (i, entry) in newL1.enumerated() where entry != 0 { encoded.setBE(entry, at: i * 8) }
        try file.write(encoded, at: header.l1TableOffset)
        try file.flush()

        // The in-memory table follows the file's even if dropping the old
        // references fails.
        var failure: Error?
        do {
            try updateSnapshotRefcount(l1Offset: header.l1TableOffset, l1Size: activeSize, addend: -1)
        } catch {
            failure = error
        }
        map.l1 = newL1
        rebuildOverlapIndex()
        if let failure { throw failure }

        try updateSnapshotRefcount(l1Offset: header.l1TableOffset, l1Size: activeSize, addend: 0)
    }
}
