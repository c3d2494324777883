// What a node is opened from: QEMU's BlockdevOptions, the subset QcowKit
// implements (format drivers qcow2 and raw over the `file` protocol driver),
// in the two shapes the command line gives them: `-blockdev` (every node
// spelled out) and `-drive` (a file name, the backing chain from the headers).

import Qcow2

/// A format node's `file` child.
public indirect enum BlockdevRef: Equatable, Sendable {
    /// An existing node, by name (`file=NODE`).
    case node(String)
    /// A new node from nested options (`file.driver=file,file.filename=...`).
    case options(BlockdevOptions)
    /// `-drive`'s `file=PATH`: a new `file` protocol node opened on PATH.
    case filename(String)
}

/// A qcow2 node's backing child.
public indirect enum BackingChoice: Equatable, Sendable {
    /// Absent: open what the image header names, read-only, as QEMU does;
    /// the options, if any, override parts of that node (`-drive`'s
    /// `backing.node-name=X`, `backing.backing=NODE`, ...).
    case fromImage(BlockdevOptions?)
    /// `backing=NODE`: an existing node.
    case node(String)
    /// `backing=null`: no backing, whatever the header says.
    case none
}

public struct BlockdevOptions: Equatable, Sendable {
    /// "qcow2", "raw" or "file"; nil probes the format (a format node over
    /// `file`), as -drive without `format=` and implicit backings do.
    public var driver: String?
    /// nil: a generated name (`#block` and digits).
    public var nodeName: String?
    /// nil: the context's default (false for blockdev-add and -drive, true
    /// for backing nodes opened from a header; a `file` child inherits its
    /// parent's).
    public var readOnly: Bool?
    /// driver=file: the path.
    public var filename: String?
    /// Format drivers: the protocol child.
    public var file: BlockdevRef?
    /// qcow2 only.
    public var backing: BackingChoice
    /// `force-share`: share every permission (read-only nodes only);
    /// nil inherits the parent's (off at the top).
    public var forceShare: Bool?
    /// driver=file: `locking` (on, off, auto); nil is auto.
    public var locking: FileLockingMode?
    /// `cache.direct`: files opened O_DIRECT; nil inherits the parent's
    /// (off at the top), as QEMU's children and backings inherit it.
    public var cacheDirect: Bool?
    /// `cache.no-flush`: flushes ignored (BDRV_O_NO_FLUSH, cache=unsafe);
    /// nil inherits the parent's (off at the top), as cacheDirect.
    public var cacheNoFlush: Bool?

    public init(driver: String? = nil, nodeName: String? = nil, readOnly: Bool? = nil, filename: String? = nil,
                file: BlockdevRef? = nil, backing: BackingChoice = .fromImage(nil)) {
        self.driver = driver
        self.nodeName = nodeName
        self.readOnly = readOnly
        self.filename = filename
        self.file = file
        self.backing = backing
    }

    /// `driver=file,filename=PATH`.
    public static func file(_ path: String, nodeName: String? = nil, readOnly: Bool? = nil) -> BlockdevOptions {
        BlockdevOptions(driver: "file", nodeName: nodeName, readOnly: readOnly, filename: path)
    }
}
