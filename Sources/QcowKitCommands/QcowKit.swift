// The `qcowkit` command: qemu-img's subcommands under one root (QemuImgFront
// finds the verb; each verb is a file of its own in this target and reads its
// own options with VerbGetopt), so the commands can be tested in-process.
import Qcow2

public enum QcowKit {
    public static let version = "0.1.0"

    /// Runs one qcowkit command line in this process (the verb first, without
    /// the program's name) and returns its exit status, for programs and
    /// fuzz targets that drive the verbs as a script would.
    public static func run(_ arguments: [String]) -> Int32 {
        QemuImgFront.imgMain(arguments, tool: .qcowkit)
    }

    /// Runs the command line (`argv`, the program name first) and exits with
    /// qemu-img's conventions: messages on stderr prefixed with the name the
    /// program was invoked as, exit status 1 on failure (QemuImgFront).
    public static func runMain(_ argv: [String] = CommandLine.arguments) -> Never {
        MallocArenas.limit()
        QemuImgFront.run(argv)
    }
}

/// A failure with the message the user sees and the exit status
/// (1 unless a command defines others, as `check` does).
public struct CommandFailure: Error, CustomStringConvertible {
    public var message: String
    public var status: Int32
    public init(_ message: String, status: Int32 = 1) {
        self.message = message; self.status = status
    }
    public var description: String { message }
}
