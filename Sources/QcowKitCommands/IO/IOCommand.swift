// qemu-io's command table and dispatch: a line is split on spaces (no
// quoting), its first word names a command or its short alias, and the
// argument count, an open image and write permission are checked before the
// command runs, each failure with qemu-io's message.

struct IOCommand: Sendable {
    var name: String
    var altname: String?
    /// Operand counts after the name; `maxArguments` nil means no limit.
    var minArguments: Int
    var maxArguments: Int?
    /// The synopsis after the name ("[-abCqv] ... off len"), if any.
    var arguments: String?
    var oneline: String
    /// Extended help for `help NAME`, printed after the synopsis.
    var help: String?
    /// Runs without an open image (help, quit, open, ...).
    var needsImage = true
    /// Needs write permission: refused up front on a read-only image.
    var writes = false
    /// Waits for I/O, after which qemu-io's outstanding asynchronous
    /// requests have completed and printed their reports.
    var polls = false
    /// Returns false when the command failed (qemu-io then exits 1).
    var run: @Sendable (IOSession, [String]) -> Bool

    /// The line `help` prints for the command, named as the user typed it.
    func synopsis(as typed: String) -> String {
        "\(typed) " + (arguments.map { $0 + " " } ?? "") + "-- \(oneline)\n"
    }

    /// Prints the synopsis (how commands answer bad usage).
    func usage(_ session: IOSession) -> Bool {
        session.console.out(synopsis(as: name))
        return false
    }
}

enum IOCommands {
    /// Every command, in the alphabetical order `help` lists them.
    static let all: [IOCommand] = (IOReadCommands.all + IOWriteCommands.all + IOStatusCommands.all
                                   + IOControlCommands.all).sorted { $0.name < $1.name }

    static func find(_ word: String) -> IOCommand? {
        all.first { $0.name == word || $0.altname == word }
    }

    /// Runs one command line; false if it failed. Words are separated by
    /// single spaces, empty words dropped (a blank line does nothing).
    static func execute(_ line: String, in session: IOSession) -> Bool {
        let words = line.utf8.split(separator: UInt8(ascii: " ")).map { String(Substring($0)) }
        guard let first = words.first else { return true }
        guard let command = find(first) else {
            session.console.err("command \"\(first)\" not found")
            return false
        }
        if command.needsImage && session.device == nil {
            session.console.err("no file open, try 'help open'")
            return false
        }
        let count = words.count - 1
        if count < command.minArguments || command.maxArguments.map({ count > $0 }) == true {
            let expected: String
            if let max = command.maxArguments {
                expected = max == command.minArguments
                    ? "expected \(max) arguments"
                    : "expected between \(command.minArguments) and \(max) arguments"
            } else {
                expected = "expected at least \(command.minArguments) arguments"
            }
            session.console.err("bad argument count \(count) to \(first), \(expected)")
            return false
        }
        if command.writes, let device = session.device, device.readOnly {
            session.console.err("\(IOSession.program): Block node is read-only")
            return false
        }
        let ok = command.run(session, words)
        // Completions are delivered once the command's own request is done.
        if command.polls { session.completeAsynchronousRequests() }
        return ok
    }
}
