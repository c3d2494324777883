// The name the program was invoked as, and which tool that makes it: QEMU's
// tools prefix every message with their own basename (error_init(argv[0])),
// so a qcowkit installed or symlinked as `qemu-img`, `qemu-io` or `qemu-nbd`
// acts as that tool and says so in its messages.
import Qcow2
import Synchronization

public enum Tool: Equatable, Sendable {
    case qcowkit
    case qemuImg
    case qemuIO
    case qemuNBD

    /// The tool a program name stands for; anything unknown is qcowkit.
    init(invokedAs name: String) {
        switch name {
        case "qemu-img": self = .qemuImg
        case "qemu-io": self = .qemuIO
        case "qemu-nbd": self = .qemuNBD
        default: self = .qcowkit
        }
    }
}

enum ProgramName {
    /// The basename of `argv0`, as glib's g_path_get_basename gives it.
    static func basename(_ argv0: String) -> String {
        var path = Substring(argv0)
        while path.count > 1 && path.hasSuffix("/") { path = path.dropLast() }
        if let slash = path.lastIndex(of: "/"), path != "/" { path = path[path.index(after: slash)...] }
        return path.isEmpty ? "qcowkit" : String(path)
    }

    /// The name messages start with. The codec's diagnostics owner holds it,
    /// so a message from the codec and one from a command agree.
    static var current: String { Qcow2Diagnostics.programName ?? "qcowkit" }

    private static let invocation = Mutex<String?>(nil)

    /// argv[0] exactly as given (QemuImgFront sets it). glibc's getopt
    /// messages and qemu-nbd's "Try `...'" line print it so, path and all,
    /// where error_report prints the basename.
    static var argv0: String {
        get { invocation.withLock { $0 } ?? current }
        set { invocation.withLock { $0 = newValue } }
    }

    /// "NAME: message", as error_report prints it.
    static func prefixed(_ message: String) -> String { "\(current): \(message)" }
}
