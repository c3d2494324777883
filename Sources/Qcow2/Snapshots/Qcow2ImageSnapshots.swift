// Internal snapshots of an open qcow2 image, the library's entry points: list,
// create, apply and delete, each as QEMU 7.2's qcow2 driver does it (the
// steps and their crash ordering are in SnapshotCreate, SnapshotApply and
// SnapshotDelete.swift). Changing snapshots needs the image open for writing.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image {
    /// The internal snapshots in table order, as `qemu-img snapshot -l`
    /// lists them. Throws `Qcow2Error` if the table cannot be read.
    public func listSnapshots() throws -> [SnapshotInfo] {
        try snapshotTable().entries.map(SnapshotInfo.init)
    }

    /// The snapshot table as it is now.
    package func snapshotTable() throws -> SnapshotTable {
        if isWritable { return try withWriter { writer, _ in writer.snapshots } }
        return try SnapshotTable.read(from: self)
    }

    /// Takes a snapshot of the image's current state named `name` (names
    /// need not be unique; QEMU keeps at most 255 bytes of it), with the
    /// next free ID, dated `date` (seconds and nanoseconds since the epoch;
    /// now, to the microsecond as qemu-img takes it, when nil). Returns it.
    /// Throws `SnapshotError.tooManySnapshots`, or `Qcow2Error`.
    @discardableResult
    public func createSnapshot(name: String, date: (seconds: UInt32, nanoseconds: UInt32)? = nil) throws -> SnapshotInfo {
        let date = date ?? Self.currentSnapshotDate()
        let entry = try withSnapshotWriter { writer, _ in
            try writer.createSnapshot(name: name, dateSeconds: date.seconds, dateNanoseconds: date.nanoseconds)
        }
        return SnapshotInfo(entry)
    }

    /// Reverts the image to the snapshot with ID `idOrName` or, if no ID
    /// matches, the first one with that name. The snapshot stays.
    /// Throws `SnapshotError` (`notFound`, `activeDirtyBitmaps`), or
    /// `Qcow2Error`.
    public func applySnapshot(_ idOrName: String) throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        if hasPersistentBitmaps { throw SnapshotError.activeDirtyBitmaps }
        try withSnapshotWriter { writer, lock in try writer.applySnapshot(idOrName: idOrName, lock: lock) }
    }

    /// Deletes the first snapshot with this ID and/or name, freeing the
    /// clusters only it used. Throws `SnapshotError` (`notFound`,
    /// `deleteStep`), or `Qcow2Error`.
    public func deleteSnapshot(id: String? = nil, name: String? = nil) throws {
        try withSnapshotWriter { writer, _ in try writer.deleteSnapshot(id: id, name: name) }
    }

    /// Runs a snapshot operation with the metadata lock held. Metadata found
    /// broken on the way marks the image corrupt, and that is reported as
    /// QEMU prints it ("qcow2: Marking image as corrupt: ...", by withWriter)
    /// before the operation fails.
    private func withSnapshotWriter<T>(_ body: (Qcow2Writer, borrowing HeldMetadataLock) throws -> T) throws -> T {
        try withWriter { writer, lock in try writer.guarded { try body(writer, lock) } }
    }

    /// Now, as qemu-img dates a snapshot: the real-time clock in whole
    /// microseconds.
    static func currentSnapshotDate() -> (seconds: UInt32, nanoseconds: UInt32) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return (UInt32(truncatingIfNeeded: now.tv_sec), UInt32(now.tv_nsec / 1000 * 1000))
    }
}
