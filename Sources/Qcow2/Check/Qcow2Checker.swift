// A qcow2 image opened for `check`: the header validated as QEMU's check mode
// does (the snapshot table is left to the check itself, so a broken table can
// be reported and repaired instead of refusing the image), the active L1 table
// and the refcount table in memory, and the few header updates a repair makes.
// The check itself lives in the other files of this folder, one step each.

public final class Qcow2Checker {
    let file: BlockFile
    var header: Qcow2Header
    let layout: ValidatedLayout
    let geometry: CheckGeometry

    /// The active L1 table as read on open (s->l1_table).
    var l1Table: [UInt64]
    /// The refcount table in use (s->refcount_table) and where it lives.
    var refcountTable: [UInt64]
    var refcountTableOffset: UInt64
    /// Refcount blocks as read from disk (QEMU's refcount block cache).
    let refblockCache = RefblockCache()

    /// The snapshot table as the check read it (empty until then).
    var snapshots: [CheckSnapshot] = []
    var snapshotsOffset: UInt64 = 0
    var snapshotsSize: UInt64 = 0

    /// QEMU reports corruption once (s->signaled_corruption); a fatal report
    /// marks the image corrupt and makes it unusable for the rest of the run.
    var corruptionSignaled = false
    var isUnusable = false
    /// Where the current check reports (also used by cache write-backs).
    var reporter: CheckDiagnostics = { _ in }
    private var knownLength: UInt64?

    public var isWritable: Bool { file.isWritable }
    public var backingFileName: String? { layout.backingFileName }
    public var backingFormat: String? { layout.backingFormat }
    public var path: String { file.path }
    /// A bitmaps extension whose autoclear bit is clear: a program without
    /// bitmap support changed the image (QEMU warns on open).
    public var bitmapsAreStale: Bool { layout.bitmapsAreStale }

    /// Opens `file` (writable for repairs). Errors read as qemu-img's do
    /// after "Could not open '...': ".
    public init(file: BlockFile) throws {
        self.file = file
        let fileSize = try file.size()
        let prefix = try file.readExactly(Int(min(fileSize, 4096)), at: 0, step: "reading qcow2 header")
        let decoded = try Qcow2Header.decode(prefix)
        let firstLength = Int(min(decoded.clusterSize, fileSize))
        let firstCluster = firstLength <= prefix.count
            ? Array(prefix.prefix(firstLength))
            : try file.readExactly(firstLength, at: 0, step: "reading qcow2 header")
        let full = try Qcow2Header.decode(firstCluster)
        // Check mode skips the snapshot table on open, and a corrupt image
        // may be opened read-write to be repaired.
        var withoutSnapshots = full
        withoutSnapshots.snapshotCount = 0
        withoutSnapshots.snapshotsOffset = 0
        let layout = try HeaderValidation.validate(
            header: withoutSnapshots, firstCluster: firstCluster, fileSize: fileSize, writable: false)
        self.layout = layout
        var header = layout.header
        header.snapshotCount = full.snapshotCount
        header.snapshotsOffset = full.snapshotsOffset
        self.header = header
        geometry = try CheckGeometry(header: header)

        // Both tables were validated with the header: inside the file, at
        // most 32 MiB and 8 MiB.
        let l1Bytes = Int(header.l1Size) * 8
        let l1 = try file.readExactly(l1Bytes, at: header.l1TableOffset, step: "reading the L1 table")
        l1Table = (0..<Int(header.l1Size)).map { l1.be(UInt64.self, at: $0 * 8) }
        let tableBytes = Int(UInt64(header.refcountTableClusters) * header.clusterSize)
        let table = try file.readExactly(tableBytes, at: header.refcountTableOffset, step: "reading the refcount table")
        refcountTable = (0..<(tableBytes / 8)).map { table.be(UInt64.self, at: $0 * 8) }
        refcountTableOffset = header.refcountTableOffset
    }

    public static func open(path: String, writable: Bool) throws -> Qcow2Checker {
        try Qcow2Checker(file: BlockFile(path: path, writable: writable))
    }

    public func close() throws { try file.close() }

    // MARK: Reading

    /// The file's current length (it may grow during a repair); asked of
    /// the file again after every write.
    func fileLength() throws -> UInt64 {
        if let knownLength { return knownLength }
        do {
            let length = try file.size()
            knownLength = length
            return length
        } catch {
            throw CheckFailure(errno: CheckErrno.io)
        }
    }

    /// Reads metadata as QEMU's block layer does: past the end of the file
    /// reads zeroes; a request QEMU cannot address fails with EIO.
    func read(_ count: Int, at offset: UInt64) throws -> [UInt8] {
        guard offset <= UInt64(Int64.max) - UInt64(count) else { throw CheckFailure(errno: CheckErrno.io) }
        var bytes = [UInt8](repeating: 0, count: count)
        do {
            _ = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
        } catch let Qcow2Error.io(_, code) {
            throw CheckFailure(errno: code)
        }
        return bytes
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        guard !isUnusable else { throw CheckFailure(errno: CheckErrno.io) }
        guard offset <= UInt64(Int64.max) - UInt64(bytes.count) else { throw CheckFailure(errno: CheckErrno.io) }
        knownLength = nil
        do {
            try file.write(bytes, at: offset)
        } catch let Qcow2Error.io(_, code) {
            throw CheckFailure(errno: code)
        }
    }

    /// Sets the file's length (check_refblocks grows the file to reach a
    /// refcount block past its end).
    func truncate(to length: UInt64) throws {
        knownLength = nil
        do { try file.truncate(to: length) } catch let Qcow2Error.io(_, code) { throw CheckFailure(errno: code) }
    }

    func flush() throws {
        do { try file.flush() } catch let Qcow2Error.io(_, code) { throw CheckFailure(errno: code) }
    }

    // MARK: Corruption and header flags

    /// qcow2_signal_corruption: reported once; when the image is writable the
    /// report is fatal: the corrupt bit is set and the image is unusable
    /// (QEMU drops its driver: nothing more is written, not even the cached
    /// refcount blocks).
    func signalCorruption(_ message: String, diagnostics: CheckDiagnostics) {
        let fatal = isWritable
        if corruptionSignaled && (!fatal || header.incompatibleFeatures.contains(.corrupt)) { return }
        if fatal {
            diagnostics(CheckMessage("qcow2: Marking image as corrupt: \(message); further corruption events will be suppressed"))
            try? writeIncompatibleFeatures(header.incompatibleFeatures.union(.corrupt))
            isUnusable = true
        } else {
            diagnostics(CheckMessage("qcow2: Image is corrupt: \(message); further non-fatal corruption events will be suppressed"))
        }
        corruptionSignaled = true
    }

    /// Clears a header flag as qcow2_mark_clean / qcow2_mark_consistent do:
    /// metadata caches are written first.
    func clearIncompatibleFeature(_ feature: IncompatibleFeatures) throws {
        guard header.incompatibleFeatures.contains(feature) else { return }
        try flushRefcountBlocks()
        try flush()
        try writeIncompatibleFeatures(header.incompatibleFeatures.subtracting(feature))
    }

    /// Rewrites the incompatible feature bits. QEMU rewrites the whole header
    /// cluster, which for an image it created itself changes only this field.
    /// Version 2 headers have no such field: the bits then live in memory only.
    private func writeIncompatibleFeatures(_ features: IncompatibleFeatures) throws {
        header.incompatibleFeatures = features
        guard header.version >= 3 else { return }
        var field = [UInt8](repeating: 0, count: 8)
        field.setBE(features.rawValue, at: 0)
        try write(field, at: 72)
    }

    /// What closing a writable image does (qcow2_inactivate): caches are
    /// written and the dirty bit goes, unless a fatal corruption made the
    /// image unusable.
    public func finishRepairs() throws {
        guard isWritable, !isUnusable else { return }
        try flushRefcountBlocks()
        try flush()
        try clearIncompatibleFeature(.dirty)
    }
}
