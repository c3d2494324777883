// `qcowkit io`'s own command line, parsed as qemu-io 7.2 parses it (getopt_long
// with its option letters and long names), then the image is opened and the
// -c commands run in order, or without -c commands lines are read from
// standard input after a "qemu-io> " prompt until end of input or `quit`.
// The exit status is 1 if any command failed, as with qemu-io.
import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum IOProgram {
    private static let objectOption: UInt8 = 0x80
    private static let imageOptsOption: UInt8 = 0x81

    private static let longOptions: [IOGetopt.LongOption] = [
        .init(name: "help", takesArgument: false, code: UInt8(ascii: "h")),
        .init(name: "version", takesArgument: false, code: UInt8(ascii: "V")),
        .init(name: "cmd", takesArgument: true, code: UInt8(ascii: "c")),
        .init(name: "format", takesArgument: true, code: UInt8(ascii: "f")),
        .init(name: "read-only", takesArgument: false, code: UInt8(ascii: "r")),
        .init(name: "snapshot", takesArgument: false, code: UInt8(ascii: "s")),
        .init(name: "nocache", takesArgument: false, code: UInt8(ascii: "n")),
        .init(name: "copy-on-read", takesArgument: false, code: UInt8(ascii: "C")),
        .init(name: "misalign", takesArgument: false, code: UInt8(ascii: "m")),
        .init(name: "native-aio", takesArgument: false, code: UInt8(ascii: "k")),
        .init(name: "aio", takesArgument: true, code: UInt8(ascii: "i")),
        .init(name: "discard", takesArgument: true, code: UInt8(ascii: "d")),
        .init(name: "cache", takesArgument: true, code: UInt8(ascii: "t")),
        .init(name: "trace", takesArgument: true, code: UInt8(ascii: "T")),
        .init(name: "object", takesArgument: true, code: objectOption),
        .init(name: "image-opts", takesArgument: false, code: imageOptsOption),
        .init(name: "force-share", takesArgument: false, code: UInt8(ascii: "U")),
    ]

    /// "qemu-io" when invoked so, else "qcowkit io".
    private static var invocation: String {
        Tool(invokedAs: ProgramName.current) == .qemuIO ? ProgramName.current : "qcowkit io"
    }

    static var usage: String { """
        Usage: \(invocation) [OPTIONS]... [-c STRING]... [file]
        QcowKit disk exerciser: qemu-io's commands on qcow2 and raw images

          --object OBJECTDEF   define an object (secret, tls-creds-x509, ...)
          --image-opts         treat file as option string
          -c, --cmd STRING     execute command with its arguments
                               from the given string
          -f, --format FMT     specifies the block driver to use (qcow2 or raw)
          -r, --read-only      export read-only
          -s, --snapshot       use snapshot file (not supported)
          -n, --nocache        disable host cache, short for -t none
          -C, --copy-on-read   enable copy-on-read (no effect)
          -m, --misalign       misalign allocations for O_DIRECT (no effect)
          -k, --native-aio     use kernel AIO implementation (no effect)
          -i, --aio=MODE       use AIO mode (threads, native or io_uring; no effect)
          -t, --cache=MODE     use the given cache mode for the image
          -d, --discard=MODE   use the given discard mode for the image
          -T, --trace PATTERN  accepted for compatibility and ignored
          -U, --force-share    force shared permissions
          -h, --help           display this help and exit
          -V, --version        output version information and exit

        See '\(invocation) -c help' for information on available commands.

        """
    }

    /// Runs `qcowkit io` with `arguments` (after "io") and returns the exit
    /// status. `readLine` gives the next chunk of standard input as fgets
    /// would (nil at end of input).
    static func run(_ arguments: [String], console: IOConsole, readLine: () -> String?) -> Int32 {
        let session = IOSession(console: console)
        defer { console.flush() }
        var commands: [String] = []
        var options = IOOpenOptions()
        let objects = QemuObjects()
        // As qemu-io, glibc's getopt messages name argv[0] as given.
        let argv0 = Tool(invokedAs: ProgramName.current) == .qemuIO ? ProgramName.argv0 : IOSession.program
        var getopt = IOGetopt([argv0] + arguments, shortOptions: "hVc:d:f:rsnCmki:t:T:U",
                              longOptions: longOptions)
        func fail(_ message: String) -> Int32 {
            console.err("\(IOSession.program): \(message)")
            return 1
        }
        while let item = getopt.next() {
            switch item {
            case let .error(message):
                console.err(message)
                console.out(usage)
                return 1
            case let .option(code, argument):
                let value = argument ?? ""
                switch code {
                case UInt8(ascii: "h"):
                    console.out(usage)
                    return 0
                case UInt8(ascii: "V"):
                    // Invoked as qemu-io: "qemu-io version 7.2.0 (qcowkit ...)".
                    let name = ProgramName.current
                    console.out(Tool(invokedAs: name) == .qemuIO
                                ? "\(name) version \(QemuImgHelp.qemuVersion) (qcowkit \(QcowKit.version))\n"
                                : "qcowkit io version \(QcowKit.version)\n")
                    return 0
                case UInt8(ascii: "c"): commands.append(value)
                case UInt8(ascii: "f"): options.format = value
                case UInt8(ascii: "r"): options.readOnly = true
                case UInt8(ascii: "s"): return fail("snapshot mode (-s) is not supported")
                case UInt8(ascii: "n"): _ = options.setCacheMode("none")
                case UInt8(ascii: "t"):
                    guard options.setCacheMode(value) else { return fail("Invalid cache option: \(value)") }
                case UInt8(ascii: "d"):
                    guard options.setDiscardMode(value) else { return fail("Invalid discard option: \(value)") }
                case UInt8(ascii: "i"):
                    guard IOOpenOptions.isKnownAIOMode(value) else { return fail("Invalid aio option: \(value)") }
                case UInt8(ascii: "U"): options.forceShare = true
                case UInt8(ascii: "C"): options.copyOnRead = true
                case imageOptsOption: session.imageOptionsMode = true
                case objectOption:
                    // Made at once, as qemu-io makes them, by qemu-img's reader.
                    do {
                        if try objects.add(value) == .helpShown { return 0 }
                    } catch {
                        return fail(error.description)
                    }
                case UInt8(ascii: "T"):
                    // QcowKit has no trace events: a named one does not exist.
                    for event in traceEvents(value) { session.warn("trace event '\(event)' does not exist") }
                default: break   // -m, -k: nothing QcowKit does differs
                }
            }
        }
        let operands = getopt.operands
        guard operands.count <= 1 else {
            console.out(usage)
            return 1
        }
        if session.imageOptionsMode && options.format != nil {
            return fail("--image-opts and -f are mutually exclusive")
        }
        if let file = operands.first {
            if session.imageOptionsMode {
                options.optionStrings.append(file)
                guard session.open(nil, options: options) else { return 1 }
            } else {
                guard session.open(file, options: options) else { return 1 }
            }
        }

        var failed = false
        if !commands.isEmpty {
            for command in commands where !session.quitRequested {
                if !IOCommands.execute(command, in: session) { failed = true }
            }
        } else {
            while !session.quitRequested {
                console.out("qemu-io> ")
                console.flush()
                // As qemu-io: the prompt (and what came before it) leaves
                // stdio now, so a process driving us through a pipe sees
                // that the previous command has returned.
                fflush(stdout)
                // Requests complete while qemu-io waits for input.
                session.completeAsynchronousRequests()
                guard var line = readLine() else { break }
                if line.utf8.last == UInt8(ascii: "\n") { line = String(decoding: line.utf8.dropLast(), as: UTF8.self) }
                if !IOCommands.execute(line, in: session) { failed = true }
            }
        }
        session.close()
        return failed ? 1 : 0
    }

    /// The event names (not glob patterns) a -T argument enables:
    /// "[enable=]PATTERN" among comma-separated options.
    static func traceEvents(_ argument: String) -> [String] {
        QemuOpts(argument, impliedName: "enable").entries.compactMap { name, pattern in
            guard name == "enable", !pattern.isEmpty, !pattern.contains(where: { "*?".contains($0) }) else { return nil }
            return pattern
        }
    }

    /// The next line of standard input as qemu-io reads it: at most 1023
    /// bytes (a longer line arrives in pieces, each run as a command).
    static func readStandardInput() -> String? {
        var buffer = [CChar](repeating: 0, count: 1024)
        guard fgets(&buffer, Int32(buffer.count), stdin) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
