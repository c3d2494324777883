// The text of `qemu-img --help` (help() in qemu-img.c) for the verbs this
// build has: the same layout, synopses and parameter notes, the program name
// as invoked, and the formats QcowKit opens and creates.

enum QemuImgHelp {
    /// The QEMU release whose behaviour QcowKit follows.
    static let qemuVersion = "7.2.0"

    /// `Supported formats:` lists drivers sorted by name; QcowKit's are the
    /// two image formats and the file protocol under them.
    static let supportedFormats = ["file", "qcow2", "raw"]

    /// qcowkit's own verbs, listed after qemu-img's when invoked as qcowkit.
    static let qcowkitSynopses = [
        "io [qemu-io options] [-c command]... [filename]",
        "serve [-blockdev options]... [-drive options]... -qmp|-qmp-pretty stdio|unix:PATH,server=on,wait=off",
    ]

    static func text(program: String, verbs: [QemuImgVerb], ownVerbs: Bool = false) -> String {
        let names = Set(verbs.map(\.name))
        var text = QemuImgFront.versionText() + "\n"
        text += """
            usage: \(program) [standard options] command [command options]
            QEMU disk image utility

                '-h', '--help'       display this help and exit
                '-V', '--version'    output version information and exit
                '-T', '--trace'      [[enable=]<pattern>][,events=<file>][,file=<file>]
                                     specify tracing options (accepted; QcowKit has no trace points)

            Command syntax:

            """
        for verb in verbs { text += "  \(verb.synopsis)\n" }
        if ownVerbs { for synopsis in qcowkitSynopses { text += "  \(synopsis)\n" } }
        text += """

            Command parameters:
              'filename' is a disk image filename
              'fmt' is the disk image format. It is guessed automatically in most cases
              'cache' is the cache mode used to write the output disk image, the valid
                options are: 'none', 'writeback' (default, except for convert), 'writethrough',
                'directsync' and 'unsafe' (default for convert)
              'src_cache' is the cache mode used to read input disk images, the valid
                options are the same as for the 'cache' option
              'size' is the disk image size in bytes. Optional suffixes
                'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, 1024M),
                'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte, 1024P)  are
                supported. 'b' is ignored.
              'output_filename' is the destination disk image filename
              'output_fmt' is the destination format
              'options' is a comma separated list of format specific options in a
                name=value format. Use -o help for an overview of the options supported by
                the used format
              '-c' indicates that target image must be compressed (qcow format only)
              '-h' with or without a command shows this help and lists the supported formats
              '-p' show progress of command (only certain commands)
              '-q' use Quiet mode - do not print any output (except errors)
              '--output' takes the format in which the output must be done (human or json)

            """
        if names.contains("check") {
            text += """

                Parameters to check subcommand:
                  '-r' tries to repair any inconsistencies that are found during the check.
                       '-r leaks' repairs only cluster leaks, whereas '-r all' fixes all
                       kinds of errors, with a higher risk of choosing the wrong fix or
                       hiding corruption that has already occurred.

                """
        }
        if names.contains("compare") {
            text += """

                Parameters to compare subcommand:
                  '-f' first image format
                  '-F' second image format
                  '-s' run in Strict mode - fail on different image size or sector allocation

                """
        }
        if names.contains("dd") {
            text += """

                Parameters to dd subcommand:
                  'bs=BYTES' read and write up to BYTES bytes at a time (default: 512)
                  'count=N' copy only N input blocks
                  'if=FILE' read from FILE
                  'of=FILE' write to FILE
                  'skip=N' skip N bs-sized blocks at the start of input

                """
        }
        text += "\nSupported formats: " + supportedFormats.joined(separator: " ") + "\n"
        return text
    }
}
