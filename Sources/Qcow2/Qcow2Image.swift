// An open qcow2 image: the validated header, its extensions and the file.
// The mapping (L1/L2), refcount and I/O code live in extensions beside this
// file, one concept each; an image opened for writing also has a write path
// (Sources/Qcow2/Write), which may repair a dirty image as it opens.

import Synchronization

// Checked Sendable: every stored property is immutable and Sendable, or in a
// Mutex/Atomic; the metadata (and the write path's state) is owned by the
// cluster map's MetadataLock.
/// An open qcow2 image: reads, block status and (opened writable) writes,
/// zero writes, discards and flushes, as QEMU's qcow2 driver does them.
/// Open one with `ImageOpener.open` (with its backing chain) or `open(path:writable:)`.
/// Throws `Qcow2Error` throughout.
public final class Qcow2Image: Sendable {
    package let file: BlockFile
    /// The header as the image was opened. Writing changes some fields on
    /// disk (the dirty bit, table locations); the write path keeps those.
    package var header: Qcow2Header { stored.withLock { $0.header } }
    /// The header extensions as stored now; `changeBackingFile` rewrites them.
    package var extensions: [HeaderExtension] { stored.withLock { $0.extensions } }
    /// The backing file name exactly as stored in the header (not resolved);
    /// `changeBackingFile` rewrites it.
    public var backingFileName: String? { stored.withLock { $0.backingFileName } }
    /// What the three above read. A job's thread changes it (a commit
    /// relinks or grows an image) while the monitor and readers look.
    let stored: Mutex<(header: Qcow2Header, extensions: [HeaderExtension], backingFileName: String?)>
    /// Whether the image was opened for writing.
    public var isWritable: Bool { file.isWritable }

    /// The image unallocated ranges read from; attached by `ImageOpener` or
    /// by the block graph's `attachBacking` (an image opened alone has none, and
    /// reads zeroes there). Swapped while other threads read (a block graph
    /// relinks nodes), hence the lock.
    public internal(set) var backing: BlockImage? {
        get { backingStorage.withLock { $0 } }
        set { backingStorage.withLock { $0 = newValue } }
    }
    private let backingStorage = Mutex<BlockImage?>(nil)
    /// Set by `attachBacking`: the embedder chose the backing (possibly
    /// none, QEMU's backing=null), so writes do not insist on the header's.
    private let backingChosen = Atomic<Bool>(false)
    /// Guest offset -> host cluster mapping; its lock owns the metadata
    /// (active L1 table, L2 cache, and the write path's `Qcow2Writer`).
    let clusterMap: ClusterMap
    /// Decompresses compressed clusters (the header's compression type).
    let codec: ClusterCodec
    /// Whether the image looks metadata-preallocated; decided on the first
    /// block-status query, since it costs a pass over the refcounts.
    let metadataPreallocated = Mutex<Bool?>(nil)
    /// Whether the write path holds dirty bitmaps (kept by
    /// `Qcow2Writer.dirtyBitmaps`), so that guest writes need to mark them
    /// without taking the lock when there are none.
    let tracksDirtyBitmaps = Atomic<Bool>(false)
    /// The image has dirty bitmaps in memory (snapshots cannot be applied).
    var hasPersistentBitmaps: Bool { tracksDirtyBitmaps.load(ordering: .relaxed) }
    /// Whether this open has marked the image corrupt (a writable image's
    /// metadata found inconsistent, QEMU's qcow2_signal_corruption). It then
    /// answers no more reads, writes or mapping, as QEMU's node, which loses
    /// its driver: errno ENOMEDIUM, "No medium found".
    public var corruptionSignaled: Bool { clusterMap.corruptionSignaled }
    private let diagnosticSinkStorage = Mutex<Qcow2Diagnostics.Sink?>(nil)

    /// Where this image reports problems it carries on after (see
    /// Diagnostics.swift); nil for the process-wide sink.
    public var diagnosticSink: Qcow2Diagnostics.Sink? {
        get { diagnosticSinkStorage.withLock { $0 } }
        set { diagnosticSinkStorage.withLock { $0 = newValue } }
    }

    /// Reports a problem the image carries on after, as QEMU prints it.
    package func report(_ diagnostic: Qcow2Diagnostic) {
        Qcow2Diagnostics.report(diagnostic, to: diagnosticSink)
    }

    /// The backing format named by the header extension, if any.
    public var backingFormat: String? {
        for case let .backingFormat(f) in extensions { return f }
        return nil
    }

    /// Opens and validates an image alone (no backing attached; see
    /// `ImageOpener` for chains). Reads the first cluster and the active L1
    /// table; L2 tables are read on demand by the mapping code.
    /// Throws `Qcow2Error`: the file cannot be opened, or the header is invalid
    /// or unsupported (in qemu-img's words), or another process holds it
    /// (`lockConflict`: locked as `ImageOpener.open` locks).
    public static func open(path: String, writable: Bool = false, locking: ImageLocking = .standard) throws -> Qcow2Image {
        try ImageOpener.openLocked(path: path, format: .qcow2, writable: writable, locking: locking) {
            try Qcow2Image(file: $0)
        }
    }

    package convenience init(file: BlockFile) throws {
        try self.init(file: file, cacheCapacities: nil)
    }

    /// Cache sizes in clusters (L2 tables, refcount blocks), like QEMU's
    /// l2-cache-size and refcount-cache-size; nil for QEMU's defaults.
    struct CacheCapacities {
        var l2Tables: Int
        var refcountBlocks: Int
    }

    /// `warnsOfStaleBitmaps`: false where the caller printed QEMU's warning
    /// about a stale bitmaps extension already (the check).
    init(file: BlockFile, cacheCapacities: CacheCapacities?, warnsOfStaleBitmaps: Bool = true) throws {
        self.file = file
        let fileSize = try file.size()
        let (header, firstCluster) = try Qcow2Header.readFirstCluster(of: file, fileSize: fileSize)
        let layout = try HeaderValidation.validate(
            header: header, firstCluster: firstCluster, fileSize: fileSize, writable: file.isWritable)
        stored = Mutex((layout.header, layout.extensions, layout.backingFileName))
        clusterMap = try ClusterMap(file: file, header: layout.header, cacheCapacity: cacheCapacities?.l2Tables)
        codec = ClusterCodecs.codec(for: layout.header.compressionType)
        if file.isWritable {
            try clusterMap.lock.withLock { core in
                let writer = try Qcow2Writer(
                    image: self, tables: core.tables, header: layout.header, extensions: layout.extensions,
                    backingFileName: layout.backingFileName, refcountCacheCapacity: cacheCapacities?.refcountBlocks)
                core.writer = writer
                do {
                    try writer.prepareForWriting(warnsOfStaleBitmaps: warnsOfStaleBitmaps)
                } catch {
                    // A failed open writes nothing back (deinit finds no writer).
                    core.writer = nil
                    throw error
                }
            }
        }
    }

    /// Writes back what is cached (clearing the dirty bit of an image opened
    /// for writing), then closes the image and the backing chain below it.
    /// A failure to write the metadata back is reported (as QEMU's close
    /// reports it, see `Qcow2Writer.close`), and thrown as `Qcow2Error` once
    /// all is closed.
    public func close() throws {
        let below = backing
        // Each image below reports its own failures; closing goes on.
        defer { try? below?.close() }
        do {
            try closeWriter()
        } catch {
            try? file.close()  // the write-back failure is the one to throw
            throw error
        }
        backing = nil
        try file.close()
    }

    /// Makes `image` (or nothing: QEMU's backing=null) the image unallocated
    /// ranges read from, in place of whatever was attached. For embedders
    /// that manage chains themselves (a block graph sharing one backing
    /// node between several overlays); the header is not changed.
    package func attachBacking(_ image: BlockImage?) {
        backing = image
        backingChosen.store(true, ordering: .relaxed)
    }

    /// Whether writes may go ahead without the backing the header names.
    var isBackingChosen: Bool { backingChosen.load(ordering: .relaxed) }

    /// What `close` does to this image alone: metadata written back, the
    /// dirty bit cleared, the backing let go, but neither the backing nor
    /// the file closed (for embedders whose file and backing outlive the image).
    package func closeKeepingFile() throws {
        backing = nil
        try closeWriter()
    }

    deinit {
        // An image dropped without close() still gets its metadata written;
        // failures were reported, and there is no caller left to throw to.
        try? closeWriter()
    }

    /// `Qcow2Writer.close` for images open for writing.
    private func closeWriter() throws {
        guard isWritable else { return }
        try withWriter { writer, _ in try writer.close() }
    }
}
