// How qemu-io opens an image: the flags from its command line or the `open`
// command (read-only, cache and discard modes, force-share) and the
// key=value block options of --image-opts and `open -o`, which are read as
// every verb reads them (ImageArgument, FlatBlockOptions).

import Qcow2

struct IOOpenOptions {
    /// The driver named with -f or driver=; probed when nil.
    var format: String?
    var readOnly = false
    var forceShare = false
    /// -C: copy-on-read, which QEMU refuses on a read-only image; otherwise
    /// it has no effect QcowKit's commands could show.
    var copyOnRead = false
    /// qemu-io's default cache mode is writethrough: every write is flushed.
    var writethrough = true
    /// cache=unsafe: flushes do nothing.
    var ignoreFlushes = false
    /// cache=none/directsync (cache.direct=on): files opened O_DIRECT.
    var direct = false
    /// discard=unmap is qemu-io's default; discard=ignore drops discards.
    var unmap = true
    /// Applies a cache mode name (qemu's -t / cache=); false if unknown.
    mutating func setCacheMode(_ mode: String) -> Bool {
        switch mode {
        case "none", "off": writethrough = false; ignoreFlushes = false; direct = true
        case "writeback": writethrough = false; ignoreFlushes = false; direct = false
        case "directsync": writethrough = true; ignoreFlushes = false; direct = true
        case "writethrough": writethrough = true; ignoreFlushes = false; direct = false
        case "unsafe": writethrough = false; ignoreFlushes = true; direct = false
        default: return false
        }
        return true
    }

    /// How the image's files are opened: locks, and O_DIRECT.
    var locking: ImageLocking { ImageLocking(forceShare: forceShare, direct: direct) }

    /// Applies a discard mode name (qemu's -d / discard=); false if unknown.
    mutating func setDiscardMode(_ mode: String) -> Bool {
        switch mode {
        case "off", "ignore": unmap = false
        case "on", "unmap": unmap = true
        default: return false
        }
        return true
    }

    /// Whether an AIO mode name (qemu's -i) is one QEMU knows. QcowKit does
    /// its I/O synchronously, so the choice changes nothing else.
    static func isKnownAIOMode(_ mode: String) -> Bool {
        ["threads", "native", "io_uring"].contains(mode)
    }

    /// The option strings of --image-opts' operand and `open -o`, in the
    /// order given; the block layer's one reader (ImageArgument, through
    /// FlatBlockOptions) reads them when the image is opened.
    var optionStrings: [String] = []

    /// What the block options said that qemu-io's own flags also set.
    mutating func take(_ argument: ImageArgument) {
        format = argument.format
        forceShare = forceShare || argument.forceShare
        if let discard = argument.discard { _ = setDiscardMode(discard) }
        if let noFlush = argument.noFlush { ignoreFlushes = noFlush }
        if let cacheDirect = argument.cacheDirect { direct = cacheDirect }
    }
}
