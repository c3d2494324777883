// Option parsing as glibc's getopt(3) does it for qemu-io's commands and
// getopt_long(3) for its command line: options may follow operands (they are
// permuted to the front unless POSIXLY_CORRECT is set), "--" ends options,
// short options cluster ("-qv", "-P5"), and long options may be abbreviated
// to any unambiguous prefix. Options are handed out one at a time because
// qemu-io acts on each as it comes: a bad pattern stops it before a later
// unknown option is ever reported.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct IOGetopt {
    struct LongOption {
        var name: String
        var takesArgument: Bool
        /// The short option it stands for (or a private code above 0x7f).
        var code: UInt8
        /// Matched only when spelled out: a later QEMU's spelling must not
        /// make an abbreviation that 7.2 accepts ambiguous.
        var exactOnly = false
    }

    enum Item: Equatable {
        /// An option and its argument, if it takes one.
        case option(UInt8, String?)
        /// A usage error, with getopt's message (already prefixed with the
        /// program or command name).
        case error(String)
    }

    private let arguments: [String]
    private let program: String
    /// Per byte: 0 not an option letter, 1 an option, 2 one taking an
    /// argument (a ':' after it in the option string). A plain table, as
    /// every verb's start builds one.
    private let letters: [UInt8]
    private let longOptions: [LongOption]
    private let permute: Bool
    private var index = 1
    /// Letters left in the current cluster ("-qv" after 'q': "v").
    private var cluster: ArraySlice<UInt8> = []
    private var skipped: [String] = []
    private var finished = false

    /// What the last `.error` was about, as qemu-img reports it with a
    /// leading ':' in its option string: whether an argument was missing, and
    /// argv[optind - 1] at that moment (the element holding the option once
    /// it is used up; the one before it while letters of a cluster remain).
    private(set) var failure: (missingArgument: Bool, element: String)?

    /// `arguments[0]` is the name error messages start with.
    init(_ arguments: [String], shortOptions: String, longOptions: [LongOption] = [],
         program: String? = nil) {
        self.arguments = arguments
        self.program = program ?? arguments.first ?? ""
        var spec = Array(shortOptions.utf8)
        var permute = getenv("POSIXLY_CORRECT") == nil
        if spec.first == UInt8(ascii: "+") { permute = false; spec.removeFirst() }
        self.permute = permute
        var table = [UInt8](repeating: 0, count: 256)
        var i = 0
        while i < spec.count {
            let letter = spec[i]
            let hasArgument = i + 1 < spec.count && spec[i + 1] == UInt8(ascii: ":")
            table[Int(letter)] = hasArgument ? 2 : 1
            i += hasArgument ? 2 : 1
        }
        letters = table
        self.longOptions = longOptions
    }

    /// The operands once `next()` has returned nil, in their original order.
    var operands: [String] {
        skipped + (index < arguments.count ? Array(arguments[index...]) : [])
    }

    /// The word the last option or error came from (glibc's argv[optind - 1]).
    var lastWord: String { arguments[max(index - 1, 0)] }

    /// The next option, or nil when options are done.
    mutating func next() -> Item? {
        if !cluster.isEmpty { return shortOption() }
        guard !finished else { return nil }
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" {
                index += 1
                finished = true
                return nil
            }
            let bytes = Array(argument.utf8)
            if bytes.count < 2 || bytes[0] != UInt8(ascii: "-") {
                guard permute else { finished = true; return nil }
                skipped.append(argument)
                index += 1
                continue
            }
            index += 1
            if bytes[1] == UInt8(ascii: "-") && !longOptions.isEmpty {
                return longOption(String(decoding: bytes[2...], as: UTF8.self))
            }
            cluster = bytes[1...]
            return shortOption()
        }
        finished = true
        return nil
    }

    private mutating func shortOption() -> Item {
        let letter = cluster.removeFirst()
        guard letter != UInt8(ascii: ":"), letters[Int(letter)] != 0 else {
            failure = (false, arguments[cluster.isEmpty ? index - 1 : index - 2])
            cluster = []
            return .error("\(program): invalid option -- '\(Self.character(letter))'")
        }
        guard letters[Int(letter)] == 2 else { return .option(letter, nil) }
        if !cluster.isEmpty {
            let value = String(decoding: cluster, as: UTF8.self)
            cluster = []
            return .option(letter, value)
        }
        guard index < arguments.count else {
            failure = (true, arguments[index - 1])
            return .error("\(program): option requires an argument -- '\(Self.character(letter))'")
        }
        index += 1
        return .option(letter, arguments[index - 1])
    }

    private mutating func longOption(_ text: String) -> Item {
        let name: Substring
        var value: String?
        if let equals = text.firstIndex(of: "=") {
            name = text[..<equals]
            value = String(text[text.index(after: equals)...])
        } else {
            name = Substring(text)
        }
        var found: LongOption?
        if let exact = longOptions.first(where: { $0.name == name }) {
            found = exact
        } else {
            let candidates = longOptions.filter { !$0.exactOnly && $0.name.hasPrefix(name) }
            // Prefixes of options that mean the same thing are not ambiguous.
            if let first = candidates.first,
               candidates.allSatisfy({ $0.code == first.code && $0.takesArgument == first.takesArgument }) {
                found = first
            } else if candidates.count > 1 {
                failure = (false, arguments[index - 1])
                return .error("\(program): option '--\(text)' is ambiguous; possibilities:"
                              + candidates.map { " '--\($0.name)'" }.joined())
            }
        }
        guard let option = found else {
            failure = (false, arguments[index - 1])
            return .error("\(program): unrecognized option '--\(text)'")
        }
        if option.takesArgument {
            if value == nil {
                guard index < arguments.count else {
                    failure = (true, arguments[index - 1])
                    return .error("\(program): option '--\(option.name)' requires an argument")
                }
                value = arguments[index]
                index += 1
            }
        } else if value != nil {
            failure = (false, arguments[index - 1])
            return .error("\(program): option '--\(option.name)' doesn't allow an argument")
        }
        return .option(option.code, value)
    }

    private static func character(_ byte: UInt8) -> String {
        String(decoding: [byte], as: UTF8.self)
    }
}
