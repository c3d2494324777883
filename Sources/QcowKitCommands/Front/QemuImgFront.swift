// qemu-img's command line (main in qemu-img.c): standard options first
// (-h/--help, -V/--version, -T/--trace, option parsing stopping at the verb),
// then the verb looked up by name. Unknown verbs, bad flags and missing
// arguments get qemu-img's messages and exit status 1, prefixed with the
// name the program was invoked as; `--help` lists the verbs qcowkit has and
// the formats it supports. Invoked as `qemu-io`, the program is qemu-io.
import Qcow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum QemuImgFront {
    /// Every verb: each parses its own command line as qemu-img does (getopt
    /// over the arguments after the verb) and returns the exit status.
    static func nativeVerb(_ name: String) -> (([String]) -> Int32)? {
        switch name {
        case "info": return Info.main
        case "check": return Check.main
        case "map": return Map.main
        case "compare": return Compare.main
        case "measure": return Measure.main
        case "dd": return DD.main
        case "bench": return Bench.main
        case "resize": return { argv in finish { try Resize.run(Array(argv.dropFirst())) } }
        case "rebase": return { argv in finish { try Rebase.run(Array(argv.dropFirst())) } }
        case "commit": return { argv in finish { try Commit.run(Array(argv.dropFirst())) } }
        case "amend": return { argv in finish { try Amend.run(Array(argv.dropFirst())) } }
        case "create": return Create.main
        case "convert": return Convert.main
        case "snapshot": return Snapshot.main
        case "bitmap": return { argv in finish { try Bitmap.run(Array(argv.dropFirst())) } }
        case "serve": return { argv in finish { try Serve.run(Array(argv.dropFirst())) } }
        case "io":
            return { argv in
                let status = IOProgram.run(Array(argv.dropFirst()), console: .standard(), readLine: IOProgram.readStandardInput)
                Terminal.flushStandardOutput()
                return status
            }
        default: return nil
        }
    }

    /// Verbs of qcowkit's own, not qemu-img's: hidden when invoked as qemu-img.
    static let qcowkitOnlyVerbs: Set<String> = ["io", "serve"]

    static func run(_ argv: [String]) -> Never {
        let name = ProgramName.basename(argv.first ?? "qcowkit")
        Qcow2Diagnostics.programName = name
        ProgramName.argv0 = argv.first ?? name
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
        guard tool == .qcowkit || !qcowkitOnlyVerbs.contains(verb), let run = nativeVerb(verb) else {
            return errorExit("Command not found: \(verb)")
        }
        return run([verb] + verbArguments)
    }

    /// Runs a verb's body and returns its exit status: 0, or the failure's
    /// (a CommandFailure's message reported as error_report reports it).
    static func finish(_ body: () throws -> Void) -> Int32 {
        do {
            try body()
            return 0
        } catch let failure as CommandFailure {
            Terminal.flushStandardOutput()
            if !failure.message.isEmpty { Terminal.printError(ProgramName.prefixed(failure.message)) }
            return failure.status
        } catch let error as ExitCode {
            return error.rawValue
        } catch {
            // Not a failure a verb words itself: reported as a usage error,
            // with the pointer to --help.
            return errorExit("\(error)")
        }
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
        QemuImgVerb.all.filter { nativeVerb($0.name) != nil }
    }
}
