// QEMU's block permissions (include/block/block-common.h, BLK_PERM_*) and
// the rules by which a node passes its users' needs down to its children
// (block.c's bdrv_default_perms): what each process records in an image
// file's lock bytes (FileLockBytes.swift). QEMU 7.2 has four permissions;
// the fifth bit an older QEMU locked (graph-mod, byte 104/204) is gone, and
// is neither taken nor tested here, as 7.2 does.

/// What a user of an image may do to it (QEMU's BLK_PERM_* bits, which are
/// also the lock byte numbers: byte 100 + bit, 200 + bit).
public struct BlockPermissions: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x0f }

    /// Reads see one complete, self-consistent disk.
    public static let consistentRead = BlockPermissions(rawValue: 1 << 0)
    /// Changes the visible disk contents.
    public static let write = BlockPermissions(rawValue: 1 << 1)
    /// Writes that leave the visible contents as they are.
    public static let writeUnchanged = BlockPermissions(rawValue: 1 << 2)
    /// Changes the size.
    public static let resize = BlockPermissions(rawValue: 1 << 3)
    public static let all: BlockPermissions = [.consistentRead, .write, .writeUnchanged, .resize]

    /// The bit numbers, lowest first (the lock byte is 100 or 200 plus it).
    package var bits: [Int] { (0..<4).filter { rawValue & (1 << $0) != 0 } }

    /// QEMU's names (bdrv_perm_names), comma-separated.
    public var description: String {
        bits.map { ["consistent read", "write", "write unchanged", "resize"][$0] }.joined(separator: ", ")
    }
}

/// What one user of an image needs (`perm`) and lets others have at the same
/// time (`shared`): QEMU's perm / shared_perm pair.
public struct BlockAccess: Hashable, Sendable {
    public var perm: BlockPermissions
    public var shared: BlockPermissions
    public init(perm: BlockPermissions, shared: BlockPermissions) {
        self.perm = perm
        self.shared = shared
    }

    /// Needs nothing, shares everything (a node nobody uses).
    public static let none = BlockAccess(perm: [], shared: .all)

    /// Several users of one node: their needs add up, what they share narrows.
    package func combined(with other: BlockAccess) -> BlockAccess {
        BlockAccess(perm: perm.union(other.perm), shared: shared.intersection(other.shared))
    }

    /// A block backend opened as qemu-img and qemu-io open images
    /// (blk_new_open): consistent reads, writes when writable; others may do
    /// anything (the format driver narrows that).
    public static func backend(writable: Bool) -> BlockAccess {
        BlockAccess(perm: writable ? [.consistentRead, .write] : .consistentRead, shared: .all)
    }

    /// What QEMU's file driver holds while it creates (and truncates) a
    /// file: write and resize, and nobody else may resize it meanwhile.
    package static let creation = BlockAccess(perm: [.write, .resize], shared: BlockPermissions.all.subtracting(.resize))

    // MARK: How a node passes its users' needs to its children

    /// What a format node over its file needs of that file, given what the
    /// node's users need (`self`): raw passes them through (a filter); qcow2
    /// adds what its metadata needs: consistent reads unless opened without
    /// I/O, writes and growth when writable, and others may neither write
    /// nor resize the file under it. Every permission is shared with
    /// force-share.
    package func forFile(of format: ImageFormat, writable: Bool, withoutIO: Bool = false,
                         forceShare: Bool = false) -> BlockAccess {
        var access = self
        if format == .qcow2 {
            if writable { access.perm.formUnion([.write, .resize]) }
            if !withoutIO { access.perm.insert(.consistentRead) }
            access.shared.subtract([.write, .resize])
            // The file holds data as well as metadata.
            if access.perm.contains(.writeUnchanged) { access.perm.insert(.write) }
            if access.perm.contains(.write) { access.perm.insert(.resize) }
        }
        if forceShare { access.shared = .all }
        return access
    }

    /// What an overlay with these users needs of its backing node
    /// (bdrv_default_perms_for_cow): consistent reads if they need them;
    /// the backing may change under them only if they let the overlay change.
    package var forBacking: BlockAccess {
        let shared: BlockPermissions = self.shared.contains(.write) ? .all : [.consistentRead, .writeUnchanged]
        return BlockAccess(perm: perm.intersection(.consistentRead), shared: shared)
    }
}

/// How an image file is locked: QEMU's `locking` option of the `file`
/// driver. `auto` locks where open file description locks exist (Linux);
/// `on` asks for them anyway (elsewhere nothing is locked, with a warning).
public enum FileLockingMode: String, Sendable, CaseIterable {
    case on, off, auto
}

/// How an opener locks the images it opens: the locking mode of their files
/// and QEMU's force-share (`-U`), which shares every permission and may only
/// be used read-only.
public struct ImageLocking: Sendable, Equatable {
    public var mode: FileLockingMode
    public var forceShare: Bool
    /// cache.direct=on (-t none / directsync): every file of the chain is
    /// opened O_DIRECT, as QEMU's backing files inherit the cache mode. It
    /// rides here because this is what every open of a chain's files is
    /// handed.
    public var direct: Bool
    /// cache.no-flush=on (-t unsafe, BDRV_O_NO_FLUSH): every file of the
    /// chain ignores flushes (`BlockFile.ignoresFlushes`), as QEMU's backing
    /// files inherit it; it rides here for the same reason as `direct`.
    public var noFlush: Bool
    public init(mode: FileLockingMode = .auto, forceShare: Bool = false, direct: Bool = false, noFlush: Bool = false) {
        self.mode = mode
        self.forceShare = forceShare
        self.direct = direct
        self.noFlush = noFlush
    }

    /// Locks taken and honoured (the default).
    public static let standard = ImageLocking()
    /// No locks at all (`locking=off`).
    public static let off = ImageLocking(mode: .off)
    /// Locks taken but every permission shared (`-U`, `force-share=on`).
    public static let forceShared = ImageLocking(forceShare: true)
}
