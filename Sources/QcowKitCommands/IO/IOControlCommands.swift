// The commands around the I/O: help, quit, open, close, reopen, sleep,
// sigraise, abort, and the blkdebug breakpoint commands, which find no
// blkdebug node to act on (QcowKit has none) and say so as qemu-io does.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2
import QMP
import QemuJSON

enum IOControlCommands {
    static let all: [IOCommand] = [
        IOCommand(name: "help", altname: "?", minArguments: 0, maxArguments: 1, arguments: "[command]",
                  oneline: "help for one or all commands", needsImage: false, run: help),
        IOCommand(name: "quit", altname: "q", minArguments: 0, maxArguments: nil,
                  oneline: "exit the program", needsImage: false,
                  run: { session, _ in session.quitRequested = true; return true }),
        IOCommand(name: "open", altname: "o", minArguments: 1, maxArguments: nil,
                  arguments: "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
                  oneline: "open the file specified by path", help: IOHelpTexts.open, needsImage: false,
                  run: open),
        IOCommand(name: "close", altname: "c", minArguments: 0, maxArguments: 0,
                  oneline: "close the current open file", run: { session, _ in session.close(); return true }),
        IOCommand(name: "reopen", minArguments: 0, maxArguments: nil,
                  arguments: "[(-r|-w)] [-c cache] [-o options]",
                  oneline: "reopens an image with new options", help: IOHelpTexts.reopen, run: reopen),
        IOCommand(name: "sleep", minArguments: 1, maxArguments: 1,
                  oneline: "waits for the given value in milliseconds", needsImage: false, polls: true, run: sleep),
        IOCommand(name: "sigraise", minArguments: 1, maxArguments: 1, arguments: "signal",
                  oneline: "raises a signal", help: IOHelpTexts.sigraise, needsImage: false, run: sigraise),
        IOCommand(name: "abort", minArguments: 0, maxArguments: 0,
                  oneline: "simulate a program crash using abort(3)", needsImage: false,
                  run: { _, _ in
                      // SIGABRT's default action, as qemu-io dies: not the Swift
                      // runtime's crash report (its handler is taken off first).
                      signal(SIGABRT, SIG_DFL)
                      Glibc.abort()
                  }),
        IOCommand(name: "break", minArguments: 2, maxArguments: 2, arguments: "event tag",
                  oneline: "sets a breakpoint on event and tags the stopped request as tag",
                  run: { session, _ in noBlkdebug(session, "Could not set breakpoint") }),
        IOCommand(name: "remove_break", minArguments: 1, maxArguments: 1, arguments: "tag",
                  oneline: "remove a breakpoint by tag",
                  run: { session, words in noBlkdebug(session, "Could not remove breakpoint \(words[1])") }),
        // qemu-io waits for ever when no blkdebug node holds the tag; there is
        // none here, so the wait is refused instead of hanging.
        IOCommand(name: "wait_break", minArguments: 1, maxArguments: 1, arguments: "tag",
                  oneline: "waits for the suspension of a request",
                  run: { session, words in noBlkdebug(session, "Could not wait for breakpoint \(words[1])") }),
        IOCommand(name: "resume", minArguments: 1, maxArguments: 1, arguments: "tag",
                  oneline: "resumes the request tagged as tag",
                  run: { session, _ in noBlkdebug(session, "Could not resume request") }),
    ]

    private static func help(_ session: IOSession, _ words: [String]) -> Bool {
        let console = session.console
        guard words.count > 1 else {
            for command in IOCommands.all { console.out(command.synopsis(as: command.name)) }
            console.out("\nUse 'help commandname' for extended help.\n")
            return true
        }
        guard let command = IOCommands.find(words[1]) else {
            console.out("command \(words[1]) not found\n")
            return false
        }
        console.out(command.synopsis(as: words[1]))
        if let text = command.help { console.out(text) }
        return true
    }

    private static func open(_ session: IOSession, _ words: [String]) -> Bool {
        guard let command = IOCommands.find(words[0]) else { return false }
        var options = IOOpenOptions()
        let parsed = command.parseOptions(words, in: session, [
            .check("s") {
                session.console.err("\(IOSession.program): snapshot mode (-s) is not supported")
                return .finish(false)
            },
            .set("n") { _ = options.setCacheMode("none") },
            .set("C") { options.copyOnRead = true },
            .set("k") {},   // native AIO changes nothing observable here
            .set("r") { options.readOnly = true },
            .choice("t", "cache", in: session) { options.setCacheMode($0) },
            .choice("d", "discard", in: session) { options.setDiscardMode($0) },
            .choice("i", "aio", in: session) { IOOpenOptions.isKnownAIOMode($0) },
            .argument("o") { value in
                if session.imageOptionsMode {
                    session.console.out("--image-opts and 'open -o' are mutually exclusive\n")
                    return .finish(false)
                }
                options.optionStrings.append(value)
                return .proceed
            },
            .set("U") { options.forceShare = true },
        ])
        guard case var .operands(operands) = parsed else { return parsed.result }
        if session.imageOptionsMode && operands.count == 1 {
            options.optionStrings.append(operands[0])
            operands = []
        }
        guard operands.count <= 1 else { return command.usage(session) }
        return session.open(operands.first, options: options)
    }

    private static func reopen(_ session: IOSession, _ words: [String]) -> Bool {
        guard let command = IOCommands.find(words[0]), let device = session.device else { return false }
        var options = device.options
        var readWriteGiven = false, cacheGiven = false
        var reopenOptions: [(name: String, value: String)] = []
        let readWrite = { (readOnly: Bool) -> IOOption.Outcome in
            if readWriteGiven {
                session.console.err("\(IOSession.program): Only one -r/-w option may be given")
                return .finish(false)
            }
            options.readOnly = readOnly
            readWriteGiven = true
            return .proceed
        }
        let parsed = command.parseOptions(words, in: session, [
            // A refused mode ends the command, so cacheGiven need not wait for the answer.
            .choice("c", "cache", in: session) { cacheGiven = true; return options.setCacheMode($0) },
            .value("o") {
                // Read (and warned about) as the options are parsed.
                let opts = QemuOpts($0)
                opts.warnings.forEach(session.warn)
                reopenOptions += opts.entries
            },
            .check("r") { readWrite(true) },
            .check("w") { readWrite(false) },
        ])
        guard case let .operands(operands) = parsed else { return parsed.result }
        guard operands.isEmpty else { return command.usage(session) }
        // In bdrv_reopen's order: qemu-io's own checks, the options the node
        // takes anew (checked, then no other effect), options that would
        // change what cannot change (QEMU's QDict order; a file child's after
        // the node's, named without "file."), then permissions.
        func fail(_ message: String) -> Bool {
            session.console.err("\(IOSession.program): \(message)")
            return false
        }
        var readOnlyWithWriters = false
        var fixed: [(String, String)] = []
        for (key, value) in reopenOptions {
            switch key {
            case "read-only":
                if readWriteGiven { return fail("Cannot set both -r/-w and 'read-only'") }
                // Unlike -r, the option alone leaves qemu-io's backend wanting to write.
                readOnlyWithWriters = value == "on" && !device.readOnly
                options.readOnly = value == "on"
            case "cache.direct", "cache.no-flush":
                if cacheGiven { return fail("Cannot set both -c and the cache options") }
                if key == "cache.no-flush" { options.ignoreFlushes = value == "on" }
                if key == "cache.direct" { options.direct = value == "on" }
            default:
                fixed.append((key, value))
            }
        }
        let runtime: Set<String>
        do {
            runtime = try FlatBlockOptions.checkReopen(fixed, driver: device.image is Qcow2Image ? "qcow2" : "raw")
        } catch {
            return fail("\(error)")
        }
        // An unchanged value is no change (qobject_is_equal with the options it was opened with).
        let current = ["driver": device.image is Qcow2Image ? "qcow2" : "raw", "file.filename": device.path]
        let changed = fixed.filter { !runtime.contains($0.0) && current[$0.0] != $0.1 }
        let own = QDictOrder.ordered(changed.filter { !$0.0.hasPrefix("file.") })
        let child = QDictOrder.ordered(changed.filter { $0.0.hasPrefix("file.") }.map { (String($0.0.dropFirst(5)), $0.1) })
        if let (key, _) = (own + child).first { return fail("Cannot change the option '\(key)'") }
        if readOnlyWithWriters {
            // (QEMU's generated node name is a fixed one here, as in other messages.)
            return fail("Read-only block node '\(BitmapConstraints.anonymousNodeName)' cannot support read-write users")
        }
        if let message = session.reopen(with: options) {
            session.console.err("\(IOSession.program): \(message)")
            return false
        }
        return true
    }

    private static func sleep(_ session: IOSession, _ words: [String]) -> Bool {
        guard let (milliseconds, rest) = IONumbers.strtol(words[1], base: 0), milliseconds >= 0, rest.isEmpty else {
            session.console.out("\(words[1]) is not a valid number\n")
            return false
        }
        var interval = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&interval, &remaining) != 0 && errno == EINTR { interval = remaining }
        return true
    }

    private static func sigraise(_ session: IOSession, _ words: [String]) -> Bool {
        guard let signal = session.number(words[1]) else { return false }
        // Linux has signals 1...64; like qemu-io, only what lies beyond NSIG
        // (65) is refused here, and raise() ignores the rest it cannot send.
        guard signal <= 65 else {
            session.console.out("signal argument '\(words[1])' is too large to be a valid signal\n")
            return false
        }
        // A signal that ends the process must not lose buffered output.
        session.console.flush()
        fflush(stdout)
        fflush(stderr)
        raise(Int32(signal))
        return true
    }

    private static func noBlkdebug(_ session: IOSession, _ what: String) -> Bool {
        session.console.out("\(what): \(String(cString: strerror(ENOTSUP)))\n")
        return false
    }
}
