// How qemu-io opens an image: the flags from its command line or the `open`
// command (read-only, cache and discard modes, force-share) and the
// key=value image options of --image-opts and `open -o`. Only the options
// that make sense for QcowKit's drivers are taken; others are refused by
// name rather than silently ignored.

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
    /// The file name given as an image option (file.filename=...).
    var filename: String?

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

    /// Image options in QEMU's "key=value,key=value" syntax, in the order
    /// given; they are interpreted when the image is opened, where QEMU
    /// reports problems with them.
    var imageOptions: [(String, String)] = []

    /// Adds the options of `text`; returns QEMU's deprecation warnings for
    /// bare keys (which mean key=on).
    mutating func add(optionString text: String) -> [String] {
        let pairs = Self.split(optionString: text)
        imageOptions += pairs.map { ($0.key, $0.value) }
        return pairs.filter(\.bare).map {
            "short-form boolean option '\($0.key)' deprecated\nPlease use \($0.key)=on instead"
        }
    }

    /// Takes the image options into the fields they set. Returns QEMU's
    /// message for a malformed value, and the first option QcowKit's drivers
    /// do not support (reported once the format is known).
    mutating func interpretImageOptions() -> (error: String?, unsupported: String?) {
        var unsupported: String?
        for (key, value) in imageOptions {
            switch key {
            case "driver": format = value
            case "file", "file.filename", "filename": filename = value
            case "file.driver":
                guard value == "file" else { return ("Unknown driver '\(value)'", nil) }
            case "read-only", "force-share", "cache.direct", "cache.no-flush":
                guard let flag = Self.boolean(value) else { return ("Parameter '\(key)' expects 'on' or 'off'", nil) }
                switch key {
                case "read-only": if flag && !readOnly { return ("Block node is read-only", nil) }
                case "force-share": forceShare = flag
                case "cache.no-flush": ignoreFlushes = flag
                case "cache.direct": direct = flag
                default: break
                }
            case "discard":
                guard setDiscardMode(value) else { return ("Invalid discard option: \(value)", nil) }
            default:
                if unsupported == nil { unsupported = key }
            }
        }
        return (nil, unsupported)
    }

    static func split(optionString text: String) -> [(key: String, value: String, bare: Bool)] {
        var pairs: [(key: String, value: String, bare: Bool)] = []
        var parts: [String] = []
        var current = ""
        var i = text.startIndex
        while i < text.endIndex {
            let next = text.index(after: i)
            if text[i] == "," {
                if next < text.endIndex && text[next] == "," {
                    current.append(",")
                    i = text.index(after: next)
                    continue
                }
                parts.append(current)
                current = ""
            } else {
                current.append(text[i])
            }
            i = next
        }
        parts.append(current)
        for part in parts where !part.isEmpty {
            if let equals = part.firstIndex(of: "=") {
                pairs.append((String(part[..<equals]), String(part[part.index(after: equals)...]), false))
            } else {
                pairs.append((part, "on", true))
            }
        }
        return pairs
    }

    private static func boolean(_ value: String) -> Bool? {
        switch value {
        case "on", "yes", "true": return true
        case "off", "no", "false": return false
        default: return nil
        }
    }
}
