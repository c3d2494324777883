// qemu-img's command line (main in qemu-img.c): standard options first
// (-h/--help, -V/--version, -T/--trace, option parsing stopping at the verb),
// then the verb looked up by name. Unknown verbs, bad flags and missing
// arguments get qemu-img's messages and exit status 1, prefixed with the
// name the program was invoked as; `--help` lists the verbs qcowkit has and
// the formats it supports. Invoked as `qemu-io`, the program is qemu-io.
import ArgumentParser
import Qcow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum QemuImgFront {
    /// The verbs that parse their own command line as qemu-img does
    /// (getopt over the arguments after the verb); they return the exit status.
    static func nativeVerb(_ name: String) -> (([String]) -> Int32)? {
        switch name {
        case "compare": return Compare.main
        case "measure": return Measure.main
        case "dd": return DD.main
        case "bench": return Bench.main
        default: return nil
        }
    }

    /// Verbs of qcowkit's own, not qemu-img's: hidden when invoked as qemu-img.
    static let qcowkitOnlyVerbs: Set<String> = ["io", "serve"]

    static func run(_ argv: [String]) -> Never {
        let name = ProgramName.basename(argv.first ?? "qcowkit")
        Qcow2Diagnostics.programName = name
        let tool = Tool(invokedAs: name)
        let arguments = Array(argv.dropFirst())
        switch tool {
        case .qemuIO:
            let status = IOProgram.run(arguments, console: .standard(), readLine: IOProgram.readStandardInput)
            Terminal.exit(status)
        case .qemuNBD:
            Terminal.exit(NBDProgram.main(arguments))
        case .qemuImg, .qcowkit:
            Terminal.exit(imgMain(arguments, tool: tool))
        }
    }

    /// qemu-img's main after error_init: returns the exit status.
    static func imgMain(_ arguments: [String], tool: Tool) -> Int32 {
        guard !arguments.isEmpty else { return errorExit("Not enough arguments") }
        var getopt = IOGetopt([ProgramName.current] + arguments, shortOptions: "+:hVT:", longOptions: [
            .init(name: "help", takesArgument: false, code: UInt8(ascii: "h")),
            .init(name: "version", takesArgument: false, code: UInt8(ascii: "V")),
            .init(name: "trace", takesArgument: true, code: UInt8(ascii: "T")),
        ])
        while let item = getopt.next() {
            switch item {
            case .error:
                return optionError(getopt.failure)
            case .option(UInt8(ascii: "h"), _):
                return help(tool: tool)
            case .option(UInt8(ascii: "V"), _):
                Terminal.print(versionText())
                return 0
            case let .option(_, pattern):
                // -T: QcowKit has no trace events, so a named one does not exist.
                for event in IOProgram.traceEvents(pattern ?? "") {
                    Terminal.printError(ProgramName.prefixed("warning: trace event '\(event)' does not exist"))
                }
            }
        }
        let operands = getopt.operands
        guard let verb = operands.first else { return 0 }
        let verbArguments = Array(operands.dropFirst())
        if tool == .qcowkit && verb == "help" { return help(tool: tool) }
        if tool == .qcowkit && verb == "nbd" { return NBDProgram.main(verbArguments) }
        if let native = nativeVerb(verb) { return native([verb] + verbArguments) }
        let isSubcommand = QcowKit.configuration.subcommands.contains { $0.configuration.commandName == verb }
        guard isSubcommand, tool == .qcowkit || !qcowkitOnlyVerbs.contains(verb) else {
            return errorExit("Command not found: \(verb)")
        }
        if let spec = QemuImgVerb.named(verb) {
            switch checkOptions(spec, verbArguments) {
            case .valid: break
            case .help: return help()
            case let .invalid(report):
                // A flag qemu-img 7.2 does not know may be a later QEMU's
                // spelling that the verb takes (convert's --parallel, ...).
                guard (try? QcowKit.parseAsRoot([verb] + verbArguments)) != nil else { return report() }
            }
        }
        return runParsed([verb] + verbArguments)
    }

    /// Runs an ArgumentParser verb, with qemu-img's conventions for failures.
    private static func runParsed(_ arguments: [String]) -> Int32 {
        do {
            var command = try QcowKit.parseAsRoot(arguments)
            try command.run()
            return 0
        } catch let failure as CommandFailure {
            Terminal.flushStandardOutput()
            if !failure.message.isEmpty { Terminal.printError(ProgramName.prefixed(failure.message)) }
            return failure.status
        } catch let error as ExitCode {
            return error.rawValue
        } catch {
            Terminal.flushStandardOutput()
            // A flag of qemu-img's that the verb does not implement yet, or a
            // value it cannot take: said in qemu-img's words for bad usage.
            let message = QcowKit.message(for: error)
            let code = QcowKit.exitCode(for: error)
            if code == .success {
                Terminal.print(message)
                return 0
            }
            return errorExit(message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message)
        }
    }

    enum OptionCheck {
        case valid
        case help
        /// Reports the bad flag as qemu-img does and returns the exit status.
        case invalid(() -> Int32)
    }

    /// Walks `arguments` with the verb's qemu-img option string, up to the
    /// first bad flag or -h.
    static func checkOptions(_ verb: QemuImgVerb, _ arguments: [String]) -> OptionCheck {
        var arguments = arguments
        if verb.name == "resize" {
            // qemu-img takes the size off the end before getopt sees it, so
            // that "-1G" is a size and not an option.
            guard arguments.count >= 2 else { return .invalid { errorExit("Not enough arguments") } }
            arguments.removeLast()
        }
        var getopt = IOGetopt([verb.name] + arguments, shortOptions: verb.shortOptions, longOptions: verb.longOptions)
        while let item = getopt.next() {
            switch item {
            case let .error(message):
                if verb.getoptPrintsErrors {
                    return .invalid {
                        Terminal.printError(message)
                        return help()
                    }
                }
                let failure = getopt.failure
                return .invalid { optionError(failure) }
            case .option(UInt8(ascii: "h"), _):
                return .help
            default:
                continue
            }
        }
        return .valid
    }

    enum ParsedOptions {
        case operands([String])
        case exit(Int32)
    }

    /// Walks a native verb's options (`argv` starts with the verb) with
    /// qemu-img's option string for it: a bad flag ends the command as
    /// qemu-img ends it, -h prints the help and --object is refused (with
    /// `objectStatus`); `handle` gets every other option with its argument
    /// ("" if none) and returns an exit status to stop early.
    static func parseOptions(_ argv: [String], objectStatus: Int32 = 1,
                             _ handle: (UInt8, String) -> Int32?) -> ParsedOptions {
        guard let verb = argv.first.flatMap(QemuImgVerb.named) else { return .exit(1) }
        var getopt = IOGetopt(argv, shortOptions: verb.shortOptions, longOptions: verb.longOptions)
        while let item = getopt.next() {
            switch item {
            case let .error(message):
                if verb.getoptPrintsErrors {
                    Terminal.printError(message)
                    return .exit(help())
                }
                return .exit(optionError(getopt.failure))
            case .option(UInt8(ascii: "h"), _):
                return .exit(help())
            case .option(QemuImgVerb.object.code, _):
                return .exit(report(objectRefusal, status: objectStatus))
            case let .option(code, value):
                if let status = handle(code, value ?? "") { return .exit(status) }
            }
        }
        return .operands(getopt.operands)
    }

    /// A getopt failure in qemu-img's words (missing_argument, unrecognized_option).
    static func optionError(_ failure: (missingArgument: Bool, element: String)?) -> Int32 {
        guard let failure else { return errorExit("unrecognized option") }
        return errorExit(failure.missingArgument
            ? "missing argument for option '\(failure.element)'"
            : "unrecognized option '\(failure.element)'")
    }

    /// error_report: the message on standard error after the program's
    /// name; returns `status` (the verb's exit status for it).
    @discardableResult
    static func report(_ message: String, status: Int32 = 1) -> Int32 {
        Terminal.flushStandardOutput()
        Terminal.printError(ProgramName.prefixed(message))
        return status
    }

    /// What verbs answer --object with: QcowKit has no secrets or other objects.
    static let objectRefusal = "--object is not supported by qcowkit (no secrets or other objects)"

    /// error_exit: the message, qemu-img's pointer to --help, status 1.
    @discardableResult
    static func errorExit(_ message: String) -> Int32 {
        Terminal.flushStandardOutput()
        Terminal.printError(ProgramName.prefixed(message))
        Terminal.printError("Try '\(ProgramName.current) --help' for more information")
        return 1
    }

    /// The version line: QEMU's tools are matched on "NAME version X.Y.Z",
    /// so invoked as a QEMU tool we give the QEMU version we follow.
    static func versionText() -> String {
        let name = ProgramName.current
        if Tool(invokedAs: name) == .qcowkit {
            return "\(name) version \(QcowKit.version) (qemu-img 7.2 compatible)"
        }
        return "\(name) version \(QemuImgHelp.qemuVersion) (qcowkit \(QcowKit.version))"
    }

    /// Prints the help (qemu-img's help()) and returns 0.
    static func help(tool: Tool = Tool(invokedAs: ProgramName.current)) -> Int32 {
        Terminal.print(QemuImgHelp.text(program: ProgramName.current, verbs: availableVerbs(tool: tool),
                                        ownVerbs: tool == .qcowkit), terminator: "")
        return 0
    }

    /// The qemu-img verbs this build runs, in qemu-img's help order.
    static func availableVerbs(tool: Tool) -> [QemuImgVerb] {
        let subcommands = Set(QcowKit.configuration.subcommands.map { $0.configuration.commandName })
        return QemuImgVerb.all.filter { nativeVerb($0.name) != nil || subcommands.contains($0.name) }
    }
}
