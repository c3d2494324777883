// The one parser of qemu-img verbs' command lines: getopt_long over the
// arguments after the verb with the verb's row of QemuImgVerb.all, as each
// img_* function of qemu-img.c loops over getopt_long. What every verb does
// alike is done here: a bad or incomplete flag is reported in qemu-img's
// words (error_exit, or glibc's message and the help for measure, whose
// option string lacks the leading ':'), -h/--help prints the help, and
// --object is handled as qemu-img handles it. Every other option goes to the
// verb, which acts on it as it comes.
//
//     var options = VerbGetopt("resize", arguments)      // arguments after the verb
//     while let (code, value) = try options.next() { ... }
//     let files = options.operands
//
// next() throws ExitCode once the command is over (already reported);
// QemuImgFront.finish turns it into the exit status.

struct VerbGetopt {
    let verb: QemuImgVerb
    private var getopt: IOGetopt
    /// The --object objects made so far.
    private let objects = QemuObjects()

    /// `arguments` start after the verb's name.
    init(_ verb: String, _ arguments: [String]) {
        self.init(QemuImgVerb.row(verb), arguments)
    }

    init(_ verb: QemuImgVerb, _ arguments: [String]) {
        self.verb = verb
        getopt = IOGetopt([verb.name] + arguments, shortOptions: verb.allShortOptions, longOptions: verb.longOptions)
    }

    /// The next option and its argument ("" for options without one); nil
    /// when options are done.
    mutating func next() throws(ExitCode) -> (code: UInt8, value: String)? {
        guard let item = getopt.next() else { return nil }
        switch item {
        case let .error(message):
            if verb.getoptPrintsErrors {
                Terminal.printError(message)
                throw ExitCode(QemuImgFront.help())
            }
            throw ExitCode(QemuImgFront.optionError(getopt.failure))
        case .option(UInt8(ascii: "h"), _):
            throw ExitCode(QemuImgFront.help())
        case let .option(QemuImgVerb.object.code, value):
            let outcome: QemuObjects.Outcome
            do throws(ObjectFailure) {
                outcome = try objects.add(value ?? "")
            } catch {
                throw ExitCode(QemuImgFront.report(error.description, status: verb.failureStatus))
            }
            if outcome == .helpShown { throw ExitCode.success }
            return try next()
        case let .option(code, value):
            return (code, value ?? "")
        }
    }

    /// The operands once `next()` has returned nil, in their original order.
    var operands: [String] { getopt.operands }

    /// qemu-img's error_exit, thrown: the message, then where to find help.
    static func usageError(_ message: String) -> CommandFailure {
        CommandFailure(message + "\nTry '\(ProgramName.current) --help' for more information")
    }

    enum Parsed {
        case operands([String])
        case exit(Int32)
    }

    /// The whole loop, for native verbs that return their exit status:
    /// `argv` starts with the verb's name; `handle` gets each option and
    /// its argument and returns a status to stop early.
    static func parse(_ argv: [String], _ handle: (UInt8, String) -> Int32?) -> Parsed {
        var options = VerbGetopt(argv.first ?? "", Array(argv.dropFirst()))
        do throws(ExitCode) {
            while let (code, value) = try options.next() {
                if let status = handle(code, value) { return .exit(status) }
            }
        } catch {
            return .exit(error.rawValue)
        }
        return .operands(options.operands)
    }
}

/// A verb that reads its options into a value (`parse`, with VerbGetopt)
/// and then runs it: `main` is its entry in QemuImgFront's verb table.
protocol ParsedVerb {
    /// The command line after the verb's name; throws ExitCode once the run
    /// is over (help shown, a bad flag reported), or a bad value's failure.
    static func parse(_ arguments: [String]) throws -> Self
    func run() throws
}

extension ParsedVerb {
    /// `argv` starts with the verb's name; returns the exit status.
    static func main(_ argv: [String]) -> Int32 {
        QemuImgFront.finish { try parse(Array(argv.dropFirst())).run() }
    }
}
