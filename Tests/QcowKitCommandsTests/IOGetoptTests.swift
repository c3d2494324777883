// glibc getopt/getopt_long behaviour as qemu-io's parsing relies on it.
import Testing
@testable import QcowKitCommands

@Suite("qemu-io option parsing (getopt)")
struct IOGetoptTests {
    /// All items, then the operands.
    private func parse(_ words: [String], _ spec: String,
                       long: [IOGetopt.LongOption] = []) -> ([IOGetopt.Item], [String]) {
        var getopt = IOGetopt(words, shortOptions: spec, longOptions: long)
        var items: [IOGetopt.Item] = []
        while let item = getopt.next() {
            items.append(item)
            if case .error = item { break }
        }
        return (items, getopt.operands)
    }

    private func opt(_ c: Character, _ arg: String? = nil) -> IOGetopt.Item {
        .option(UInt8(ascii: c.unicodeScalars.first!), arg)
    }

    @Test("options after operands are found; operands keep their order")
    func permutation() {
        let (items, operands) = parse(["read", "0", "-v", "512", "-P", "5"], "bCl:pP:qs:v")
        #expect(items == [opt("v"), opt("P", "5")])
        #expect(operands == ["0", "512"])
    }

    @Test("clusters and attached arguments")
    func clusters() {
        let (items, operands) = parse(["read", "-qvP0x41", "-P", "-1", "1", "2"], "bCl:pP:qs:v")
        #expect(items == [opt("q"), opt("v"), opt("P", "0x41"), opt("P", "-1")])
        #expect(operands == ["1", "2"])
    }

    @Test("'--' ends the options; a lone '-' is an operand")
    func terminator() {
        let (items, operands) = parse(["read", "-", "--", "-1", "-v"], "v")
        #expect(items.isEmpty)
        #expect(operands == ["-", "-1", "-v"])
    }

    @Test("errors name the command as typed", arguments: [
        (["r", "-x"], "r: invalid option -- 'x'"),
        (["read", "0", "1", "-P"], "read: option requires an argument -- 'P'"),
        (["read", "--foo"], "read: invalid option -- '-'"),
        (["read", "-:"], "read: invalid option -- ':'"),
    ])
    func errors(words: [String], message: String) {
        let (items, _) = parse(words, "bCl:pP:qs:v")
        #expect(items.last == .error(message))
    }

    @Test("an error comes only when parsing reaches it")
    func lazyErrors() {
        var getopt = IOGetopt(["read", "-P", "x", "-z"], shortOptions: "P:")
        #expect(getopt.next() == opt("P", "x"))
        #expect(getopt.next() == .error("read: invalid option -- 'z'"))
    }

    private let long: [IOGetopt.LongOption] = [
        .init(name: "cmd", takesArgument: true, code: UInt8(ascii: "c")),
        .init(name: "read-only", takesArgument: false, code: UInt8(ascii: "r")),
        .init(name: "copy-on-read", takesArgument: false, code: UInt8(ascii: "C")),
        .init(name: "cache", takesArgument: true, code: UInt8(ascii: "t")),
    ]

    @Test("long options: exact, abbreviated, with = or a separate argument")
    func longOptions() {
        let (items, operands) = parse(["qcowkit", "--cmd=read 0 1", "--read", "f", "--cac", "none"], "c:rCt:", long: long)
        #expect(items == [opt("c", "read 0 1"), opt("r"), opt("t", "none")])
        #expect(operands == ["f"])
    }

    @Test("long option errors read like glibc's", arguments: [
        (["qcowkit", "--c"], "qcowkit: option '--c' is ambiguous; possibilities: '--cmd' '--copy-on-read' '--cache'"),
        (["qcowkit", "--bogus=1"], "qcowkit: unrecognized option '--bogus=1'"),
        (["qcowkit", "--read-only=x"], "qcowkit: option '--read-only' doesn't allow an argument"),
        (["qcowkit", "--cm"], "qcowkit: option '--cmd' requires an argument"),
    ])
    func longErrors(words: [String], message: String) {
        let (items, _) = parse(words, "c:rCt:", long: long)
        #expect(items.last == .error(message))
    }
}
