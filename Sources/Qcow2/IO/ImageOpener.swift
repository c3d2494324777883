// Opening an image with its backing chain, as the reading and writing verbs
// do; how the chain is followed (and refused) is `BackingChain`'s.

/// Opens images with their backing chains: the entry point for reading and
/// writing images.
public enum ImageOpener {
    /// Opens `path` as `format` (probed when nil) and attaches its backing
    /// chain. Only the top image can be writable; backings open read-only.
    /// Every file is locked as qemu-io locks it (see `BlockAccess`), so that
    /// another process, QEMU's or ours, cannot write under a reader or
    /// beside a writer; `locking` turns that off or shares everything.
    /// Throws `Qcow2Error`: the top image's open failure (a lock conflict is
    /// `lockConflict`; force-share with `writable` is `forceShareReadWrite`),
    /// or one nested in `inBackingFile` per backing link (QEMU's "Could not
    /// open backing file").
    public static func open(path: String, format: ImageFormat? = nil, writable: Bool = false,
                            locking: ImageLocking = .standard) throws -> BlockImage {
        try BackingChain.open(path: path, format: format, writable: writable, at: .top,
                              user: .backend(writable: writable), locking: locking)
    }

    /// Opens `image` (a chain `open` opened) again, read-write or read-only,
    /// as qemu-io's reopen does: its file gets a new descriptor, which takes
    /// over its locks for the new mode without a moment unlocked (and is
    /// refused, `lockConflict`, if another process stands in the way); its
    /// backing chain is opened anew. `locking` is the one it was opened
    /// with (force-share cannot change on reopen). On success the caller
    /// closes the old image; on failure it stays open as it was.
    package static func reopen(_ image: BlockImage, writable: Bool, user: BlockAccess,
                               locking: ImageLocking) throws -> BlockImage {
        guard let file = (image as? Qcow2Image)?.file ?? (image as? RawImage)?.file else {
            throw Qcow2Error.invalidArgument("The image cannot be reopened")
        }
        let old = file.access
        let access = user.forFile(of: image.format, writable: writable, forceShare: locking.forceShare)
        let newFile = try file.reopened(writable: writable, access: access, direct: locking.direct)
        do {
            return try BackingChain.open(file: newFile, format: image.format, at: .top, user: user, locking: locking)
        } catch {
            try? file.setAccess(old)
            throw error
        }
    }

    /// Opens the file of an image of `format` alone, locked as `open` locks
    /// it, and builds what reads it with `make`; the file is closed again if
    /// locking or `make` fails. (`Qcow2Image.open`, `RawImage.open`,
    /// `Qcow2Checker.open`.)
    package static func openLocked<T>(path: String, format: ImageFormat, writable: Bool, locking: ImageLocking,
                                      _ make: (BlockFile) throws -> T) throws -> T {
        if locking.forceShare && writable { throw Qcow2Error.forceShareReadWrite }
        let file = try BlockFile(path: path, writable: writable, locking: locking.mode, direct: locking.direct)
        file.ignoresFlushes = locking.noFlush
        do {
            try file.setAccess(BlockAccess.backend(writable: writable).forFile(
                of: format, writable: writable, forceShare: locking.forceShare))
            return try make(file)
        } catch {
            try? file.close()
            throw error
        }
    }

    /// Opens the image at `path` alone, no backing attached (qemu-img's
    /// BDRV_O_NO_BACKING: rebase -u, the emptying after commit), locked as
    /// `open` locks a top image; `format` nil probes it. `observer`: power-loss tests.
    package static func openWithoutBacking(path: String, format: ImageFormat?, writable: Bool,
                                           locking: ImageLocking = .standard,
                                           observer: (any BlockFileObserver)? = nil) throws -> BlockImage {
        try BackingChain.open(path: path, format: format, writable: writable, at: .top,
                              user: .backend(writable: writable), locking: locking, attachingBacking: false,
                              observer: observer)
    }

    /// Opens the file of an image; a failure reads like QEMU's file driver's
    /// ("Could not open 'x': No such file or directory"). No locks are taken
    /// until the opener sets the file's access. `observer`: power-loss tests.
    package static func openFile(path: String, writable: Bool, locking: FileLockingMode = .auto,
                                 direct: Bool = false, observer: (any BlockFileObserver)? = nil) throws -> BlockFile {
        do {
            return try BlockFile(path: path, writable: writable, locking: locking, observer: observer, direct: direct)
        } catch let Qcow2Error.io(_, code) {
            throw Qcow2Error.openFailed(path: path, errno: code)
        }
    }

    /// What qemu-img prints when opening `path` failed with `error`.
    package static func failureMessage(path: String, error: Error) -> String {
        "Could not open '\(path)': \(error)"
    }
}
