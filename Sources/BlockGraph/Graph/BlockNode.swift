// One node of the block graph: a format node (qcow2, raw) over a protocol
// node (file), as in QEMU's block layer. A node's children are its `file`
// and `backing`; who refers to it (parents, the monitor, drives) the graph
// keeps (NodeReferences.swift), and a node nothing refers to is closed.
//
// Threads: the graph's structure (children, flags, which image a node holds)
// changes on the graph's thread only, but jobs read it from threads of their
// own, so every mutable part sits in a Mutex. Data access (read, write,
// block status, flush) may come from any thread.

import Qcow2
import Synchronization

public final class BlockNode: Sendable {
    public let nodeName: String
    /// "qcow2", "raw" or "file" (QMP's `drv`).
    public let driver: String
    /// The file name as the node was opened: the path given, or for a backing
    /// opened from a header, the header's name resolved against the overlay.
    /// A format node has its file node's.
    public let filename: String
    /// cache.no-flush as the node was opened (QEMU's BDRV_O_NO_FLUSH, shown by
    /// query-named-block-nodes); a file node's flushes then do nothing.
    public let cacheNoFlush: Bool
    public internal(set) var isReadOnly: Bool {
        get { links.withLock { $0.isReadOnly } }
        set { links.withLock { $0.isReadOnly = newValue } }
    }
    public internal(set) var file: BlockNode? {
        get { links.withLock { $0.file } }
        set { links.withLock { $0.file = newValue } }
    }
    public internal(set) var backing: BlockNode? {
        get { links.withLock { $0.backing } }
        set { links.withLock { $0.backing = newValue } }
    }

    /// The name was generated (`#block...`), not given.
    let hasGeneratedName: Bool
    /// Creation order in the graph (QEMU's graph_bdrv_states list).
    let serial: UInt64
    /// File nodes: the open file.
    var blockFile: BlockFile? { fileStorage.withLock { $0 } }
    private let fileStorage: Mutex<BlockFile?>
    /// What data access goes through: the Qcow2Image or RawImage of a format
    /// node, a RawImage over the file of a file node. Replaced on reopen.
    private let imageStorage: Mutex<BlockImage>
    /// The format was probed (raw images then guard sector 0).
    let formatProbed: Bool
    /// The backing child is not the one the header names (backing=NODE with
    /// another file, or backing=null): QEMU's bdrv_backing_overridden.
    var backingOverridden: Bool {
        get { links.withLock { $0.backingOverridden } }
        set { links.withLock { $0.backingOverridden = newValue } }
    }

    /// Format nodes: what the node's users need of it and share (a drive's
    /// backend, overlays reading through it), and whether it shares every
    /// permission (force-share); its file is locked for that
    /// (`BlockAccess.forFile`).
    var user: BlockAccess {
        get { links.withLock { $0.user } }
        set { links.withLock { $0.user = newValue } }
    }
    var forceShare: Bool {
        get { links.withLock { $0.forceShare } }
        set { links.withLock { $0.forceShare = newValue } }
    }

    private struct Links {
        var user = BlockAccess.none
        var forceShare = false
        var isReadOnly: Bool
        var file: BlockNode?
        var backing: BlockNode?
        var backingOverridden = false
    }
    private let links: Mutex<Links>

    /// Shared by the writes through the node, held alone by a stream job
    /// filling a range from below (WriteGate.swift).
    private let writeGate = WriteGate()
    /// Called after every write with the range written (active commit's
    /// dirty tracking); keyed so that a job can remove its own.
    private let writeObservers = Mutex<[(id: UInt64, observe: @Sendable (UInt64, UInt64) -> Void)]>([])
    private let nextObserverID = Atomic<UInt64>(1)

    init(nodeName: String, generated: Bool, serial: UInt64, driver: String, filename: String, readOnly: Bool,
         cacheNoFlush: Bool, blockFile: BlockFile?, image: BlockImage, formatProbed: Bool) {
        self.nodeName = nodeName
        self.cacheNoFlush = cacheNoFlush
        self.hasGeneratedName = generated
        self.serial = serial
        self.driver = driver
        self.filename = filename
        self.links = Mutex(Links(isReadOnly: readOnly))
        self.fileStorage = Mutex(blockFile)
        self.imageStorage = Mutex(image)
        self.formatProbed = formatProbed
    }

    /// The image data access goes through.
    var image: BlockImage { imageStorage.withLock { $0 } }
    /// The qcow2 image of a qcow2 node.
    package var qcow2: Qcow2Image? { image as? Qcow2Image }

    /// Swaps what the node holds (reopen).
    func replace(image: BlockImage, blockFile: BlockFile?) {
        imageStorage.withLock { $0 = image }
        if self.blockFile != nil || blockFile != nil { fileStorage.withLock { $0 = blockFile } }
    }

    var isFormatNode: Bool { driver != "file" }

    // MARK: Data access

    /// The guest-visible size (for a file node: its length in whole sectors
    /// when it was opened).
    public var size: UInt64 { image.size }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try image.read(into: buffer, at: offset)
    }

    public func read(_ count: Int, at offset: UInt64) throws -> [UInt8] {
        try image.read(count, at: offset)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try writeGate.write { try writable().write(buffer, at: offset) }
        notifyWrite(offset, UInt64(buffer.count))
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    public func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool = false) throws {
        try writeGate.write { try writable().writeZeroes(at: offset, length: length, mayUnmap: mayUnmap) }
        notifyWrite(offset, length)
    }

    public func discard(at offset: UInt64, length: UInt64) throws {
        try writeGate.write { try writable().discard(at: offset, length: length) }
        notifyWrite(offset, length)
    }

    /// A copy-on-read prefetch of the range into this node
    /// (BlockImage.copyOnRead), with the node's writes held off meanwhile.
    /// The copies do not change what the node reads, so write observers
    /// (dirty bitmaps, jobs) are not told, as QEMU's WRITE_UNCHANGED
    /// copy-on-read writes bypass them.
    public func copyOnRead(at offset: UInt64, length: UInt64) throws {
        // Alone, as a stream's fill from below: no write lands between the
        // status read and the copy (QEMU serialises copy-on-read the same way).
        try writeGate.exclusive {
            let target = isReadOnly ? nil : (image as? WritableBlockImage).flatMap { $0.isWritable ? $0 : nil }
            try image.copyOnRead(at: offset, length: length, into: target)
        }
    }

    /// This node's own block status (not looking through its backing).
    public func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        try image.blockStatus(at: offset, length: length)
    }

    /// Writes back cached metadata and makes everything written durable.
    public func flush() throws {
        guard !isReadOnly, let writable = image as? WritableBlockImage, writable.isWritable else { return }
        try writable.flush()
    }

    /// Runs `body` with the node's writes held off (`body` writes through
    /// `writableImage()`, not through the node).
    func withWritesHeld<T>(_ body: () throws -> T) throws -> T {
        try writeGate.exclusive { try body() }
    }

    func writableImage() throws -> WritableBlockImage { try writable() }

    private func writable() throws -> WritableBlockImage {
        guard !isReadOnly, let writable = image as? WritableBlockImage, writable.isWritable else {
            throw BlockGraphError("Node '\(nodeName)' is read-only")
        }
        return writable
    }

    // MARK: Write observers

    func addWriteObserver(_ observe: @escaping @Sendable (UInt64, UInt64) -> Void) -> UInt64 {
        let id = nextObserverID.add(1, ordering: .relaxed).oldValue
        writeObservers.withLock { $0.append((id, observe)) }
        return id
    }

    func removeWriteObserver(_ id: UInt64) {
        writeObservers.withLock { $0.removeAll { $0.id == id } }
    }

    private func notifyWrite(_ offset: UInt64, _ length: UInt64) {
        let observers = writeObservers.withLock { $0.map(\.observe) }
        for observe in observers { observe(offset, length) }
    }
}
