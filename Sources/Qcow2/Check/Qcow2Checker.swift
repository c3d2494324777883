// A qcow2 image opened for `check`: the header validated as QEMU's check mode
// does (the snapshot table is left to the check itself, so a broken table can
// be reported and repaired instead of refusing the image), the active L1 table
// and the refcount table in memory, and the few header updates a repair makes.
// The check itself lives in the other files of this folder, one step each.

/// A qcow2 image opened for `qemu-img check`: `open(path:writable:)`, then
/// `check(repair:diagnostics:)` (repeatable), `finishRepairs()` and `close()`.
/// Throws `Qcow2Error` throughout.
public final class Qcow2Checker {
    let file: BlockFile
    var header: Qcow2Header
    let layout: ValidatedLayout
    let geometry: CheckGeometry

    /// The active L1 table as read on open (s->l1_table). A repair changes
    /// only entries' COPIED flags, never where the L2 tables are, so the
    /// overlap index stays valid.
    var l1Table: [UInt64]
    /// The one reader and writer of refcounts (OnDiskRefcounts.swift): the
    /// refcount table in use, its block cache and QEMU's allocator.
    let allocator: RefcountAllocator
    /// The refcount table in use (s->refcount_table) and where it lives.
    var refcountTable: [UInt64] { allocator.table }
    var refcountTableOffset: UInt64 { allocator.tableOffset }

    /// The snapshot table as the check read it (empty until then).
    var snapshotTable = SnapshotTable() { didSet { overlapIndex = nil } }
    /// Where the metadata lies (`metadataOverlap()`), while no table moves.
    var overlapIndex: MetadataOverlap?

    /// QEMU reports corruption once (s->signaled_corruption). A fatal report
    /// marks the image corrupt and drops QEMU's driver: the check under way
    /// goes on (its writes go to the file directly), but another check fails
    /// with ENOMEDIUM and closing writes nothing, not even cached refcounts.
    var corruptionSignaled = false
    /// The fatal corruption report, once made.
    private(set) var fatalCorruption: String?
    var isUnusable: Bool { fatalCorruption != nil }
    /// Where the current check reports (also used by cache write-backs).
    var reporter: CheckDiagnostics = { _ in }
    var knownLength: UInt64?

    /// Whether the image was opened for writing (repairs need it).
    public var isWritable: Bool { file.isWritable }
    /// The backing file name as stored in the header, if any.
    public var backingFileName: String? { layout.backingFileName }
    /// The backing format named by the header extension, if any.
    public var backingFormat: String? { layout.backingFormat }
    /// The path the image was opened with.
    public var path: String { file.path }
    /// A bitmaps extension whose autoclear bit is clear: a program without
    /// bitmap support changed the image (QEMU warns on open).
    public var bitmapsAreStale: Bool { layout.bitmapsAreStale }

    /// Opens `file` (writable for repairs). Errors read as qemu-img's do
    /// after "Could not open '...': ".
    package init(file: BlockFile) throws {
        self.file = file
        let fileSize = try file.size()
        let (header0, firstCluster) = try Qcow2Header.readFirstCluster(of: file, fileSize: fileSize)
        // Check mode leaves the snapshot table to the check, and a corrupt
        // image may be opened read-write to be repaired.
        let layout = try HeaderValidation.validate(
            header: header0, firstCluster: firstCluster, fileSize: fileSize, writable: false, forCheck: true)
        self.layout = layout
        header = layout.header
        geometry = try CheckGeometry(header: header)
        // QEMU loads the persistent bitmaps on open: a directory it cannot
        // load fails the open, before any check.
        if let bitmaps = layout.bitmaps { _ = try BitmapDirectory.load(bitmaps, file: file, header: header) }

        // Both tables were validated with the header (at most 32 MiB and
        // 8 MiB, addressable); as in QEMU, what lies past the end of the
        // file reads as zeroes.
        let l1Bytes = Int(header.l1Size) * 8
        let l1 = try Self.readTable(file, l1Bytes, at: header.l1TableOffset)
        l1Table = (0..<Int(header.l1Size)).map { l1.be(UInt64.self, at: $0 * 8) }
        let tableBytes = Int(UInt64(header.refcountTableClusters) * header.clusterSize)
        let table = try Self.readTable(file, tableBytes, at: header.refcountTableOffset)
        allocator = Self.makeAllocator(file: file, header: header, geometry: geometry,
                                       table: (0..<(tableBytes / 8)).map { table.be(UInt64.self, at: $0 * 8) })
        watchAllocator()

        // Opened for repairs, autoclear bits QEMU does not know are cleared
        // (the spec asks that of writers). QEMU then writes its header while
        // the snapshot table is not read yet, which drops every snapshot;
        // the table pointer is kept here.
        if file.isWritable && !header.autoclearFeatures.subtracting(AutoclearFeatures.known).isEmpty {
            header.autoclearFeatures.formIntersection(AutoclearFeatures.known)
            do {
                try writeHeader(keepingSnapshotTable: true)
            } catch let failure as CheckFailure {
                throw Qcow2Error.io(step: "updating the header", errno: failure.errno)
            }
        }
    }

    private static func readTable(_ file: BlockFile, _ count: Int, at offset: UInt64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        _ = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
        return bytes
    }

    /// Opens the image at `path` for checking (writable for repairs),
    /// locked as qemu-img check locks it. Throws `Qcow2Error` with
    /// qemu-img's words after "Could not open '...': ".
    public static func open(path: String, writable: Bool, locking: ImageLocking = .standard) throws -> Qcow2Checker {
        try ImageOpener.openLocked(path: path, format: .qcow2, writable: writable, locking: locking) {
            try Qcow2Checker(file: $0)
        }
    }

    /// Closes the image's file. Throws `Qcow2Error.io` when closing fails.
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
    /// report is fatal: the corrupt bit is set and the image is unusable.
    func signalCorruption(_ message: String, diagnostics: CheckDiagnostics) {
        let fatal = isWritable
        if corruptionSignaled && (!fatal || header.incompatibleFeatures.contains(.corrupt)) { return }
        if fatal {
            diagnostics(CheckMessage("qcow2: Marking image as corrupt: \(message); further corruption events will be suppressed"))
            try? writeIncompatibleFeatures(header.incompatibleFeatures.union(.corrupt))
            fatalCorruption = message
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

    /// Rewrites the incompatible feature bits.
    private func writeIncompatibleFeatures(_ features: IncompatibleFeatures) throws {
        header.incompatibleFeatures = features
        try writeHeader()
    }

    /// Writes the header from the state in memory, as qcow2_update_header
    /// does: the fixed fields (the snapshot table as the check last read it,
    /// the size in whole sectors, header_length normalized). The extensions
    /// and backing file name that follow are left as they are: QEMU writes
    /// them again, identically for every image it created itself. A header
    /// of unusual length, whose extensions would move, gets only its feature
    /// bits written. Version 2 headers have no feature bits: those live in
    /// memory only, but the other fields are written all the same.
    func writeHeader(keepingSnapshotTable: Bool = false) throws {
        var h = header
        h.size = header.size & ~511
        if !keepingSnapshotTable {
            h.snapshotCount = UInt32(truncatingIfNeeded: snapshotTable.entries.count)
            h.snapshotsOffset = snapshotTable.offset
        }
        h.refcountTableOffset = refcountTableOffset
        h.refcountTableClusters = UInt32(truncatingIfNeeded: UInt64(refcountTable.count) * 8 / geometry.clusterSize)
        if Int(h.headerLength) == h.encodedLength {
            try write(h.encode(), at: 0)
        } else {
            let field = HeaderFieldUpdate.incompatibleFeatures(h.incompatibleFeatures)
            try write(field.bytes, at: field.offset)
        }
    }

    /// What closing a writable image does (qcow2_inactivate): caches are
    /// written and the dirty bit goes, unless a fatal corruption made the
    /// image unusable. A cache that cannot be written is reported as QEMU
    /// reports it ("Failed to flush the refcount block cache: <strerror>",
    /// through `Qcow2Diagnostics`) and the image stays dirty.
    /// Throws `Qcow2Error.checkFailed` with the errno of the first failure.
    public func finishRepairs() throws {
        guard isWritable, !isUnusable else { return }
        do {
            do {
                try flushRefcountBlocks()
            } catch let failure as CheckFailure {
                Qcow2Diagnostics.report(Qcow2Diagnostic(.errorReport, "Failed to flush the refcount block cache: \(failure)"))
                throw failure
            }
            try flush()
            try clearIncompatibleFeature(.dirty)
        } catch let failure as CheckFailure {
            throw Qcow2Error.checkFailed(errno: failure.errno)
        }
        try storeBitmapsAgain()
    }

    /// qemu-img check -r opens the image read-write, so QEMU loads its
    /// bitmaps (marking them in use) and stores them again in new clusters
    /// when it closes it, or drops a stale bitmaps extension; done here
    /// through the write path once the repair is on disk, which leaves the
    /// same file.
    private func storeBitmapsAgain() throws {
        guard layout.bitmaps != nil || layout.bitmapsAreStale,
              !header.incompatibleFeatures.contains(.corrupt) else { return }
        let image = try Qcow2Image(file: file, cacheCapacities: nil, warnsOfStaleBitmaps: false)
        try image.closeKeepingFile()
    }
}
