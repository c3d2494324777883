// What qemu-img's image-changing verbs (resize, commit, rebase) share: the
// command line parsed as qemu-img 7.2 parses it (getopt_long with a leading
// ':', so that qemu-img words the usage errors itself, options allowed after
// operands), cache modes, opening the image for writing, and the warning a
// probed raw image gets.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import Qcow2

struct ImageVerbGetopt {
    static let objectOption: UInt8 = 0x80
    static let imageOptsOption: UInt8 = 0x81

    private var getopt: IOGetopt

    /// `arguments` start after the verb's name.
    init(_ arguments: [String], shortOptions: String, longOptions: [IOGetopt.LongOption]) {
        let common: [IOGetopt.LongOption] = [
            .init(name: "help", takesArgument: false, code: UInt8(ascii: "h")),
            .init(name: "object", takesArgument: true, code: Self.objectOption),
            .init(name: "image-opts", takesArgument: false, code: Self.imageOptsOption),
        ]
        getopt = IOGetopt(["qcowkit"] + arguments, shortOptions: shortOptions, longOptions: common + longOptions)
    }

    /// The next option and its argument; nil when options are done. Usage
    /// errors, -h, --object and --image-opts end the command.
    mutating func next() throws -> (option: UInt8, argument: String?)? {
        guard let item = getopt.next() else { return nil }
        switch item {
        case let .error(message):
            if message.contains("requires an argument") {
                throw Self.usageError("missing argument for option '\(getopt.lastWord)'")
            }
            throw Self.usageError("unrecognized option '\(getopt.lastWord)'")
        case let .option(code, argument):
            switch code {
            case UInt8(ascii: "h"):
                Terminal.print("See `qcowkit --help` and qemu-img(1) for the verbs and their options.")
                throw ExitCode.success
            case Self.objectOption:
                throw CommandFailure(QemuImgFront.objectRefusal)
            case Self.imageOptsOption:
                throw CommandFailure("--image-opts is not supported by qcowkit")
            default:
                return (code, argument)
            }
        }
    }

    var operands: [String] { getopt.operands }

    /// qemu-img's error_exit: the message, then where to find help.
    static func usageError(_ message: String) -> CommandFailure {
        CommandFailure(message + "\nTry '\(ProgramName.current) --help' for more information")
    }
}

/// The -t / -T check of the image-changing verbs (Qcow2's CacheMode).
/// The mode changes how QEMU buffers I/O, never what ends up in the image;
/// these verbs sync where QEMU's qcow2 driver syncs, whatever the mode.
enum CacheModeArgument {
    static func check(_ mode: String, what: String = "cache") throws {
        guard CacheMode(qemuName: mode) != nil else {
            throw CommandFailure(what == "cache" ? "Invalid cache option: \(mode)" : "Invalid \(what) cache option: \(mode)")
        }
    }
}

enum ImageVerbs {
    /// Opens `path` for writing, as qemu-img's img_open does, with its
    /// messages on failure: with its backing chain (read-only), or without
    /// (BDRV_O_NO_BACKING).
    static func openWritable(_ path: String, format name: String?, withBacking: Bool = true) throws -> BlockImage {
        try ReadCommands.openChain(path, format: name, writable: true, access: VerbAccess.write,
                                   attachingBacking: withBacking)
    }
}
