// qemu-img 7.2's subcommands as data: each verb's synopsis (its line in
// `--help`) and its getopt_long option string and long options, the one
// table VerbGetopt parses every verb's command line with, so that each
// answers a bad flag as qemu-img does ("unrecognized option", "missing
// argument for option"). Codes above 0x7f stand for long options without a
// letter. Spellings of later QEMU releases that a verb takes as well are
// listed apart (`laterShortOptions`, long options marked exactOnly).

struct QemuImgVerb: Sendable {
    typealias Long = IOGetopt.LongOption

    var name: String
    var synopsis: String
    var shortOptions: String
    var longOptions: [Long]
    /// Letters a later QEMU added to the verb (rebase -c, QEMU 8.2).
    var laterShortOptions = ""
    /// The exit status of the verb's own failures, --object's included
    /// (compare's is 2); usage errors exit 1 everywhere (error_exit).
    var failureStatus: Int32 = 1

    /// measure's option string has no leading ':': glibc prints its own
    /// message (as "measure: ...") and qemu-img answers with its help.
    var getoptPrintsErrors: Bool { !shortOptions.hasPrefix(":") }

    static let help = Long(name: "help", takesArgument: false, code: UInt8(ascii: "h"))
    static let object = Long(name: "object", takesArgument: true, code: 0x80)
    static let imageOpts = Long(name: "image-opts", takesArgument: false, code: 0x81)
    static let forceShare = Long(name: "force-share", takesArgument: false, code: UInt8(ascii: "U"))
    static let output = Long(name: "output", takesArgument: true, code: 0x82)

    static func long(_ name: String, argument: Bool, _ code: UInt8) -> Long {
        Long(name: name, takesArgument: argument, code: code)
    }

    /// A later QEMU's long spelling of an option: taken only spelled out.
    static func later(_ name: String, argument: Bool, _ code: UInt8) -> Long {
        Long(name: name, takesArgument: argument, code: code, exactOnly: true)
    }

    /// The option string getopt is given: 7.2's letters, then later ones.
    var allShortOptions: String { shortOptions + laterShortOptions }

    /// Every verb of qemu-img 7.2, in the order its help lists them.
    static let all: [QemuImgVerb] = [
        QemuImgVerb(
            name: "amend",
            synopsis: "amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename",
            shortOptions: ":ho:f:t:pq",
            longOptions: [help, object, imageOpts, long("force", argument: false, 0x90)]),
        QemuImgVerb(
            name: "bench",
            synopsis: "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename",
            shortOptions: ":hc:d:f:ni:o:qs:S:t:wU",
            longOptions: [help, long("flush-interval", argument: true, 0x90), imageOpts,
                          long("pattern", argument: true, 0x91), long("no-drain", argument: false, 0x92), forceShare]),
        QemuImgVerb(
            name: "bitmap",
            synopsis: "bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] [--image-opts | -f fmt] filename bitmap",
            shortOptions: ":b:f:F:g:h",
            longOptions: [help, object, imageOpts, long("add", argument: false, 0x90), long("remove", argument: false, 0x91),
                          long("clear", argument: false, 0x92), long("enable", argument: false, 0x93),
                          long("disable", argument: false, 0x94), long("merge", argument: true, 0x95)]),
        QemuImgVerb(
            name: "check",
            synopsis: "check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename",
            shortOptions: ":hf:r:T:qU",
            longOptions: [help, long("format", argument: true, UInt8(ascii: "f")), long("repair", argument: true, UInt8(ascii: "r")),
                          output, object, imageOpts, forceShare]),
        QemuImgVerb(
            name: "commit",
            synopsis: "commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename",
            shortOptions: ":f:ht:b:dpqr:",
            longOptions: [help, object, imageOpts]),
        QemuImgVerb(
            name: "compare",
            synopsis: "compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2",
            shortOptions: ":hf:F:T:pqsU",
            longOptions: [help, object, imageOpts, forceShare],
            failureStatus: 2),
        QemuImgVerb(
            name: "convert",
            synopsis: "convert [--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero] [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] [--salvage] filename [filename2 [...]] output_filename",
            shortOptions: ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:",
            longOptions: [help, object, imageOpts, forceShare, long("target-image-opts", argument: false, 0x90),
                          long("salvage", argument: false, 0x91), long("target-is-zero", argument: false, 0x92),
                          long("bitmaps", argument: false, 0x93), long("skip-broken-bitmaps", argument: false, 0x94),
                          later("parallel", argument: true, UInt8(ascii: "m")), later("oob-writes", argument: false, UInt8(ascii: "W")),
                          later("copy-range-offloading", argument: false, UInt8(ascii: "C")),
                          later("source-format", argument: true, UInt8(ascii: "f")),
                          later("source-cache", argument: true, UInt8(ascii: "T")),
                          later("snapshot", argument: true, UInt8(ascii: "l")),
                          later("target-format", argument: true, UInt8(ascii: "O")),
                          later("target-format-options", argument: true, UInt8(ascii: "o")),
                          later("target-cache", argument: true, UInt8(ascii: "t")),
                          later("backing", argument: true, UInt8(ascii: "b")),
                          later("backing-format", argument: true, UInt8(ascii: "F")),
                          later("sparse-size", argument: true, UInt8(ascii: "S")),
                          later("no-create", argument: false, UInt8(ascii: "n")),
                          later("rate-limit", argument: true, UInt8(ascii: "r")),
                          later("progress", argument: false, UInt8(ascii: "p")),
                          later("quiet", argument: false, UInt8(ascii: "q")),
                          later("compress", argument: false, UInt8(ascii: "c"))],
            laterShortOptions: "b:"),
        QemuImgVerb(
            name: "create",
            synopsis: "create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]",
            shortOptions: ":F:b:f:ho:qu",
            longOptions: [help, object]),
        QemuImgVerb(
            name: "dd",
            synopsis: "dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output",
            shortOptions: ":hf:O:U",
            longOptions: [help, object, imageOpts, forceShare]),
        QemuImgVerb(
            name: "info",
            synopsis: "info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename",
            shortOptions: ":f:hU",
            longOptions: [help, long("format", argument: true, UInt8(ascii: "f")), output,
                          long("backing-chain", argument: false, 0x90), object, imageOpts, forceShare]),
        QemuImgVerb(
            name: "map",
            synopsis: "map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename",
            shortOptions: ":f:s:l:hU",
            longOptions: [help, long("format", argument: true, UInt8(ascii: "f")), output, object, imageOpts, forceShare,
                          long("start-offset", argument: true, UInt8(ascii: "s")),
                          long("max-length", argument: true, UInt8(ascii: "l"))]),
        QemuImgVerb(
            name: "measure",
            synopsis: "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] filename]",
            shortOptions: "hf:O:o:l:U",
            longOptions: [help, imageOpts, object, output, long("size", argument: true, 0x90), forceShare]),
        QemuImgVerb(
            name: "snapshot",
            synopsis: "snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename",
            shortOptions: ":la:c:d:hqU",
            longOptions: [help, object, imageOpts, forceShare,
                          later("list", argument: false, UInt8(ascii: "l")), later("create", argument: true, UInt8(ascii: "c")),
                          later("apply", argument: true, UInt8(ascii: "a")), later("delete", argument: true, UInt8(ascii: "d")),
                          later("format", argument: true, UInt8(ascii: "f")), later("quiet", argument: false, UInt8(ascii: "q"))],
            laterShortOptions: "f:"),
        QemuImgVerb(
            name: "rebase",
            synopsis: "rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename",
            shortOptions: ":hf:F:b:upt:T:qU",
            longOptions: [help, object, imageOpts, forceShare],
            laterShortOptions: "c"),
        QemuImgVerb(
            name: "resize",
            synopsis: "resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size",
            shortOptions: ":f:hq",
            longOptions: [help, object, imageOpts, long("preallocation", argument: true, 0x90),
                          long("shrink", argument: false, 0x91)]),
    ]

    static func named(_ name: String) -> QemuImgVerb? { all.first { $0.name == name } }

    /// A verb of the table, for the verbs' own parsers (a missing row is a
    /// programming error).
    static func row(_ name: String) -> QemuImgVerb {
        guard let verb = named(name) else { preconditionFailure("no qemu-img verb \(name)") }
        return verb
    }
}
