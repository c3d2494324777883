// Following backing links: the one place that decides how, for every verb
// and for the block graph. A stored name is resolved against its overlay
// (QEMU's bdrv_get_full_backing_filename). Backing names are untrusted input
// (an image may come from anywhere), so a name QEMU would hand to a protocol
// driver or parse as JSON is refused, a file already in the chain (same
// device and inode, under any path) is a loop, and a chain deeper than
// `Qcow2Limits.maxBackingChainDepth` is refused. Failures to open a link
// nest as QEMU's do, "Could not open backing file: " once per link; a loop
// or an over-deep chain is about the whole chain and is reported as it is.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A backing file name as stored in an overlay, and how it is resolved.
package enum BackingReference {
    /// Resolves `name` as QEMU does: an absolute name as is, a relative name
    /// relative to the directory of the overlay's own path (as the overlay was
    /// opened, not the process's working directory).
    package static func resolve(_ name: String, relativeTo overlayPath: String) -> String {
        if name.hasPrefix("/") { return name }
        guard let slash = overlayPath.lastIndex(of: "/") else { return name }
        return String(overlayPath[...slash]) + name
    }

    /// Names QEMU would hand to a protocol driver or parse as JSON: a colon
    /// before any slash (QEMU's path_has_protocol: "json:{...}", "nbd://...",
    /// "file:..."). Refused, since following them from an untrusted image is
    /// how backing-file attacks work; QEMU itself fails on any it has no
    /// driver for ("Unknown protocol").
    package static func isPseudoProtocol(_ name: String) -> Bool {
        guard let colon = name.firstIndex(of: ":") else { return false }
        return !name[..<colon].contains("/")
    }

    /// The name as qemu-img info shows it in full: a protocol name as is,
    /// a file name resolved against the overlay.
    package static func fullName(_ name: String, relativeTo overlayPath: String) -> String {
        isPseudoProtocol(name) ? name : resolve(name, relativeTo: overlayPath)
    }

    /// The stored name as QEMU reads it, a C string (it ends at a NUL); nil
    /// when there is none (empty means none).
    package static func stored(_ name: String?) -> String? {
        guard let name else { return nil }
        let cut = String(name.unicodeScalars.prefix { $0 != "\0" })
        return cut.isEmpty ? nil : cut
    }
}

/// What an overlay names as its backing file.
package struct BackingLink: Equatable, Sendable {
    /// The name as stored (up to a NUL).
    package var name: String
    /// The backing format the header names; nil when none (then probed).
    package var format: String?
    /// The path of the overlay, which a relative name is resolved against.
    package var overlayPath: String

    /// The link an overlay's header describes, or nil when it names no backing.
    package init?(name: String?, format: String?, overlayPath: String) {
        guard let stored = BackingReference.stored(name) else { return nil }
        self.name = stored
        self.format = format.flatMap { $0.isEmpty ? nil : $0 }
        self.overlayPath = overlayPath
    }

    /// The file to open for it; a pseudo-protocol name is refused.
    package func target() throws -> String {
        guard !BackingReference.isPseudoProtocol(name) else { throw Qcow2Error.pseudoProtocolBackingRefused(name) }
        return BackingReference.resolve(name, relativeTo: overlayPath)
    }
}

/// Where an image sits in a chain being opened: the files of the images
/// above it and the number of backing links from the top down to it.
package struct BackingChainPosition: Sendable {
    /// Backing links from the top image to this one.
    package private(set) var depth: Int
    private var above: Set<FileIdentity>

    /// The image a verb or the graph opens first.
    package static let top = BackingChainPosition(depth: 0, above: [])

    /// The backing file of an image not open yet (`create -b`): it counts as
    /// one link below the new image, so that nothing is created that cannot
    /// be opened afterwards.
    package static let belowNewOverlay = BackingChainPosition(depth: 1, above: [])

    /// Refuses `identity` as the image at this position when it is already
    /// above: the chain loops back to `path`. This also catches an image that
    /// names itself, under any path.
    package func check(_ identity: FileIdentity, path: String) throws {
        guard !above.contains(identity) else { throw Qcow2Error.backingChainLoop(path: path) }
    }

    /// The position of the backing file of the image here (whose file is
    /// `identity`); refused past the depth limit.
    package func backing(of identity: FileIdentity) throws -> BackingChainPosition {
        try checkDepth(below: 1)
        var next = self
        next.depth += 1
        next.above.insert(identity)
        return next
    }

    /// Refuses a chain `links` deeper than this position (attaching an
    /// existing chain below it) when it would pass the limit.
    package func checkDepth(below links: Int) throws {
        guard depth + links <= Qcow2Limits.maxBackingChainDepth else {
            throw Qcow2Error.backingChainTooDeep(limit: Qcow2Limits.maxBackingChainDepth)
        }
    }
}

/// Opening a chain link by link under that policy; the block graph opens
/// its nodes itself and borrows the policy (`BackingChainPosition`,
/// `BackingLink`, `nesting`).
package enum BackingChain {
    /// What a failure to open a backing link says, one level of nesting.
    package static func nestedMessage(_ error: any Error) -> String {
        "Could not open backing file: \(error)"
    }

    /// Runs `open` for one backing link; its failure is nested by `wrap`
    /// (once per link, as QEMU does), unless it is about the whole chain.
    package static func nesting<T>(_ open: () throws -> T, wrap: (any Error) -> any Error) throws -> T {
        do {
            return try open()
        } catch let error as Qcow2Error {
            switch error {
            case .backingChainLoop, .backingChainTooDeep: throw error
            default: throw wrap(error)
            }
        } catch {
            throw wrap(error)
        }
    }

    /// Opens `path` as `format` (probed when nil) at `position` and attaches
    /// its backing chain. Only the top image can be writable; backings open
    /// read-only. `user` is what the opener's user needs of the image and
    /// shares; each file is locked for what its format needs for that
    /// (`BlockAccess.forFile`), each backing for what its overlay needs of it
    /// (`forBacking`), as soon as its format is known and before it is read.
    /// `attachingBacking` false opens the image alone (qemu-img's
    /// BDRV_O_NO_BACKING). `observer` is told of the top file's changes
    /// (power-loss tests).
    package static func open(path: String, format: ImageFormat?, writable: Bool,
                            at position: BackingChainPosition,
                            user: BlockAccess, locking: ImageLocking = .standard,
                            withoutIO: Bool = false, attachingBacking: Bool = true,
                            observer: (any BlockFileObserver)? = nil) throws -> BlockImage {
        if locking.forceShare && writable { throw Qcow2Error.forceShareReadWrite }
        let file = try ImageOpener.openFile(path: path, writable: writable, locking: locking.mode, direct: locking.direct,
                                            observer: observer)
        file.ignoresFlushes = locking.noFlush
        return try open(file: file, format: format, at: position, user: user, locking: locking, withoutIO: withoutIO,
                        attachingBacking: attachingBacking)
    }

    /// `open` over a file already open (a reopened one keeps the access it
    /// was given); the file is closed if the image cannot be opened.
    package static func open(file: BlockFile, format: ImageFormat?, at position: BackingChainPosition,
                            user: BlockAccess, locking: ImageLocking, withoutIO: Bool = false,
                            attachingBacking: Bool = true) throws -> BlockImage {
        let path = file.path, writable = file.isWritable
        var opened = false
        defer { if !opened { try? file.close() } }
        let identity = try file.identity()
        try position.check(identity, path: path)

        let image: BlockImage
        let chosen = try format ?? ImageFormat.probe(file)
        try file.setAccess(user.forFile(of: chosen, writable: writable, withoutIO: withoutIO,
                                        forceShare: locking.forceShare))
        switch chosen {
        case .raw:
            image = try RawImage(file: file)
        case .qcow2:
            let qcow2 = try Qcow2Image(file: file)
            if attachingBacking {
                qcow2.backing = try openBacking(
                    BackingLink(name: qcow2.backingFileName, format: qcow2.backingFormat, overlayPath: path),
                    below: position, overlay: identity, user: user.forBacking, locking: locking, withoutIO: withoutIO)
            }
            image = qcow2
        }
        opened = true
        return image
    }

    /// Opens the chain `link` names below the image at `position` (whose
    /// file is `overlay`), for a user (the overlay) that needs `user`; nil
    /// when there is no link.
    package static func openBacking(_ link: BackingLink?, below position: BackingChainPosition,
                                   overlay: FileIdentity, user: BlockAccess,
                                   locking: ImageLocking = .standard, withoutIO: Bool = false) throws -> BlockImage? {
        guard let link else { return nil }
        return try nesting({
            let target = try link.target()
            let next = try position.backing(of: overlay)
            // The header's backing format is used as given; only without
            // one is the backing probed.
            let format = try link.format.map { try ImageFormat(name: $0) }
            return try open(path: target, format: format, writable: false, at: next, user: user, locking: locking,
                            withoutIO: withoutIO)
        }, wrap: { error in (error as? Qcow2Error).map(Qcow2Error.inBackingFile) ?? error })
    }
}

/// Finding an image of an opened chain by file name (QEMU's
/// bdrv_find_backing_image), as `commit -b` and `rebase -b` name one: the
/// name asked for and each overlay's stored backing name are both resolved
/// against the overlay's file name and compared as real paths, so that any
/// spelling of the same file matches; protocol names match only as written.
extension BackingReference {
    /// Whether `name` names what an overlay at `overlayPath` stores as `stored`.
    package static func matches(_ name: String, stored: String, overlayPath: String) -> Bool {
        if isPseudoProtocol(name) || isPseudoProtocol(stored) { return name == stored }
        guard let wanted = realPath(resolve(name, relativeTo: overlayPath)),
              let actual = realPath(resolve(stored, relativeTo: overlayPath)) else { return false }
        return wanted == actual
    }

    package static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

extension BackingChain {
    /// The image below `top` (not `top` itself) that `name` names, if any.
    package static func find(named name: String, below top: BlockImage) -> BlockImage? {
        var current = top
        while let below = current.backing {
            defer { current = below }
            let stored = BackingReference.stored((current as? Qcow2Image)?.backingFileName) ?? ""
            if BackingReference.matches(name, stored: stored, overlayPath: current.filename) { return below }
        }
        return nil
    }
}
