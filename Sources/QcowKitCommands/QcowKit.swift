// The `qcowkit` command: qemu-img's subcommands under one root. Each verb is a
// file of its own in this target; `run()` calls the Qcow2 library, so the
// commands can be tested in-process.
import ArgumentParser
import Qcow2

public struct QcowKit: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "qcowkit",
        abstract: "A qcow2 disk-image toolkit: qemu-img's commands, in Swift.",
        version: QcowKit.version,
        subcommands: [Create.self, Convert.self, IO.self, Serve.self, Snapshot.self, Bitmap.self]
    )

    public static let version = "0.1.0"

    public init() {}

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
