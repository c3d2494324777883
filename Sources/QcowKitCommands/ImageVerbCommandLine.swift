// What qemu-img's image-changing verbs (resize, commit, rebase) share:
// cache modes and opening the image for writing. Their command lines are
// parsed by VerbGetopt.
import Qcow2

/// The -t / -T check of the image-changing verbs (Qcow2's CacheMode).
/// The mode changes how QEMU buffers I/O (O_DIRECT for none/directsync)
/// and whether it syncs (never with unsafe), never what ends up in the image.
enum CacheModeArgument {
    @discardableResult
    static func check(_ mode: String, what: String = "cache") throws -> CacheMode {
        guard let known = CacheMode(qemuName: mode) else {
            throw CommandFailure(what == "cache" ? "Invalid cache option: \(mode)" : "Invalid \(what) cache option: \(mode)")
        }
        return known
    }
}

enum ImageVerbs {
    /// Opens `path` for writing, as qemu-img's img_open does, with its
    /// messages on failure: with its backing chain (read-only), or without
    /// (BDRV_O_NO_BACKING).
    /// `cache` none/directsync opens its files O_DIRECT; unsafe makes them
    /// ignore flushes (qemu-img then never syncs).
    static func openWritable(_ argument: ImageArgument, withBacking: Bool = true,
                             cache: CacheMode = .writeback) throws -> BlockImage {
        try ReadCommands.openChain(argument, writable: true, access: VerbAccess.write,
                                   locking: ImageLocking(direct: cache.wantsDirectIO, noFlush: cache.ignoresFlushes),
                                   attachingBacking: withBacking)
    }
}
