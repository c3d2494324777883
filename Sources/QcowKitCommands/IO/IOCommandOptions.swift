// A qemu-io command's options as a table: each option's letter, whether it
// takes an argument, and what it does, stated once. The table drives
// IOGetopt, and each action runs as its option comes (qemu-io acts on each
// in turn: a bad pattern stops the command before a later option is looked
// at). Unknown options and missing arguments get getopt's message on stderr
// and the command's synopsis, as qemu-io answers bad usage.

struct IOOption {
    /// What an action says: go on, or the command is over with this result
    /// (the action has said why).
    enum Outcome {
        case proceed
        case finish(Bool)
    }

    var letter: UInt8
    var takesArgument: Bool
    var action: (String) -> Outcome

    /// An option without argument that only sets something.
    static func set(_ letter: Unicode.Scalar, _ set: @escaping () -> Void) -> IOOption {
        IOOption(letter: UInt8(ascii: letter), takesArgument: false) { _ in set(); return .proceed }
    }

    /// An option without argument that may end the command.
    static func check(_ letter: Unicode.Scalar, _ check: @escaping () -> Outcome) -> IOOption {
        IOOption(letter: UInt8(ascii: letter), takesArgument: false) { _ in check() }
    }

    /// An option with an argument that only stores it.
    static func value(_ letter: Unicode.Scalar, _ store: @escaping (String) -> Void) -> IOOption {
        argument(letter) { store($0); return .proceed }
    }

    /// An option with an argument that may end the command.
    static func argument(_ letter: Unicode.Scalar, _ action: @escaping (String) -> Outcome) -> IOOption {
        IOOption(letter: UInt8(ascii: letter), takesArgument: true, action: action)
    }

    /// An option whose argument `parse` turns into a value (a number, a
    /// pattern byte) or refuses, having said why, which ends the command.
    static func parsed<Value>(_ letter: Unicode.Scalar, _ parse: @escaping (String) -> Value?,
                              _ store: @escaping (Value) -> Void) -> IOOption {
        argument(letter) { text in
            guard let value = parse(text) else { return .finish(false) }
            store(value)
            return .proceed
        }
    }

    /// An option whose argument `accept` takes or refuses; a refused one
    /// ends the command with qemu-io's "Invalid <what> option: <value>".
    static func choice(_ letter: Unicode.Scalar, _ what: String, in session: IOSession,
                       _ accept: @escaping (String) -> Bool) -> IOOption {
        argument(letter) { text in
            guard accept(text) else {
                session.console.err("\(IOSession.program): Invalid \(what) option: \(text)")
                return .finish(false)
            }
            return .proceed
        }
    }
}

/// The options parsed: the operands, or the command's result when an option
/// ended it.
enum IOParsedOptions {
    case operands([String])
    case finished(Bool)

    var result: Bool {
        if case let .finished(ok) = self { return ok }
        return true
    }
}

extension IOCommand {
    /// Parses `words` (the command line, name first) against `table`.
    func parseOptions(_ words: [String], in session: IOSession, _ table: [IOOption]) -> IOParsedOptions {
        let spec = table.map { String(Unicode.Scalar($0.letter)) + ($0.takesArgument ? ":" : "") }.joined()
        var getopt = IOGetopt(words, shortOptions: spec)
        while let item = getopt.next() {
            switch item {
            case let .error(message):
                session.console.err(message)
                return .finished(usage(session))
            case let .option(letter, argument):
                guard let option = table.first(where: { $0.letter == letter }) else {
                    return .finished(usage(session))
                }
                if case let .finish(ok) = option.action(argument ?? "") { return .finished(ok) }
            }
        }
        return .operands(getopt.operands)
    }
}
