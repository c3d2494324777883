// qemu-img's command line against qcowkit invoked as `qemu-img`: standard
// options, unknown verbs, each verb's bad and missing flags, and errors that
// name the program as invoked; invoked as `qemu-io`, qcowkit is qemu-io.
import Foundation
import Testing

@Suite("qemu-img's front: verbs, flags and the invoked name")
struct QemuImgFrontInteropTests {
    @Test("unknown verbs, standard options and bad flags of every verb")
    func usageErrors() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        var cases: [[String]] = [
            [], ["frobnicate"], ["frobnicate", "a", "b"], ["help"], ["-x"], ["--bogus"], ["-T"], ["--trace"],
            ["-T", "foo"], ["-T", "foo", "info", "missing.qcow2"],
            ["info"], ["info", "missing.qcow2"], ["check", "missing.qcow2"], ["map", "missing.qcow2"],
            ["info", "--f", "qcow2", "top.qcow2"], ["map", "--start-offset=9E", "top.qcow2"],
            ["map", "--max-length=1x", "top.qcow2"], ["map", "-s", "64k", "-l", "1M", "top.qcow2"],
            // info, check and map read their options as qemu-img's getopt
            // loops do: abbreviations, sizes parsed as they come, the file
            // count before the output format, -T checked.
            ["map"], ["map", "a", "b"], ["map", "-s", "xx"], ["map", "-l", "-5", "top.qcow2"],
            ["map", "--output=bad"], ["map", "--out=json", "--max-len=64k", "top.qcow2"],
            ["info", "--output=bad"], ["info", "--out=json", "top.qcow2"], ["info", "top.qcow2", "x"],
            ["check", "-r", "bad"], ["check", "--output=bad", "top.qcow2", "x"], ["check", "-T", "bogus", "top.qcow2"],
            ["check", "-T", "bogus", "--output=bad", "top.qcow2"], ["check", "-T", "none", "top.qcow2"],
            ["check", "--rep=leaks", "-U", "top.qcow2"],
        ]
        for verb in ["create", "info", "check", "map", "convert", "compare", "dd", "bench", "resize", "rebase", "commit", "snapshot"] {
            cases += [[verb, "-Z"], [verb, "--zz"], [verb, "-qZ", "a"], [verb, "--object"]]
        }
        cases += [["info", "-f"], ["check", "-r"], ["convert", "-O"], ["create", "-o"], ["map", "--output"],
                  ["bench", "-c"], ["dd", "-O"], ["compare", "-F"]]
        let differences = try cases.compactMap { try run.difference($0) }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }

    @Test("measure's bad flags: glibc's message and the help, exit 0")
    func measureHelpOnBadFlag() throws {
        let run = try QemuImgDifferential()
        for arguments in [["measure", "-x"], ["measure", "--bogus"], ["measure", "-o"]] {
            let expected = try run.theirs(arguments)
            let actual = try run.mine(arguments)
            #expect(actual.status == expected.status && actual.stderr == expected.stderr, "\(arguments)")
            #expect(actual.stdout.contains("usage: qemu-img [standard options] command [command options]"))
        }
    }

    @Test("help and version: qemu-img's layout, the verbs qcowkit has, its formats")
    func helpAndVersion() throws {
        let run = try QemuImgDifferential()
        for arguments in [["--help"], ["-h"], ["info", "-h"], ["compare", "--help"], ["-h", "frobnicate"]] {
            let expected = try run.theirs(arguments)
            let actual = try run.mine(arguments)
            #expect(actual.status == 0 && expected.status == 0 && actual.stderr.isEmpty)
            let lines = actual.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "qemu-img version 7.2.0 (qcowkit 0.1.0)")
            #expect(lines.contains("usage: qemu-img [standard options] command [command options]"))
            #expect(lines.contains("Supported formats: file qcow2 raw"))
            // Every verb line is qemu-img's own, word for word.
            let verbLines = lines.filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") && !$0.hasPrefix("  '") }
            for line in verbLines {
                #expect(expected.stdout.contains(line + "\n"), "\(line)")
            }
            for verb in ["check", "compare", "convert", "create", "dd", "info", "map", "measure", "bench"] {
                #expect(verbLines.contains { $0.hasPrefix("  \(verb) ") }, "\(verb)")
            }
        }
        for arguments in [["-V"], ["--version"]] {
            let actual = try run.mine(arguments)
            #expect(actual == .init(status: 0, stdout: "qemu-img version 7.2.0 (qcowkit 0.1.0)\n", stderr: ""))
        }
    }

    @Test("invoked as qemu-io, qcowkit runs qemu-io's command line and names itself qemu-io")
    func qemuIO() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let cases: [[String]] = [
            ["-c", "read -P 5 1536k 4k", "top.qcow2"], ["-c", "map", "top.qcow2"], ["-c", "read -P 9 0 512", "top.qcow2"],
            ["-f", "raw", "-c", "read 0 512", "top.qcow2"], ["missing.qcow2"], ["-c", "frob", "top.qcow2"],
        ]
        var differences: [String] = []
        for arguments in cases {
            var expected = try run.theirs(arguments, tool: "qemu-io")
            var actual = try run.mine(arguments, tool: "qemu-io")
            // Timings in read reports differ run to run.
            expected.stdout = Self.dropTimings(expected.stdout)
            actual.stdout = Self.dropTimings(actual.stdout)
            if expected != actual { differences.append("qemu-io \(arguments)\n\(expected)\n\(actual)") }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }

    /// As qemu-io: glibc's getopt messages name argv[0] as given (ours runs
    /// by its symlink's path, replaced by the name qemu-io runs as), the usage line names
    /// qemu-io (the rest of the usage text is QcowKit's own words), and
    /// `abort` dies of SIGABRT with nothing printed (no Swift crash report).
    @Test("invoked as qemu-io: argv[0] in getopt's messages, the usage line, abort")
    func qemuIOInvocation() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        for arguments in [["-o", "x", "top.qcow2"], ["--bogus", "top.qcow2"], ["-c"], ["-c", "abort", "top.qcow2"],
                          ["-c", "read 0 512", "-c", "abort", "top.qcow2"]] {
            var expected = try run.theirs(arguments, tool: "qemu-io")
            var actual = try run.mine(arguments, tool: "qemu-io")
            #expect(!actual.stderr.contains(" qemu-io:") && !actual.stderr.hasPrefix("qemu-io:") || arguments.contains("abort"),
                    "getopt's messages name argv[0] as given: \(actual.stderr)")
            actual.stderr = actual.stderr.replacingOccurrences(of: run.oursIO + ":", with: "qemu-io:")
            if expected.stdout.hasPrefix("Usage: qemu-io [OPTIONS]") {
                #expect(actual.stdout.hasPrefix("Usage: qemu-io [OPTIONS]... [-c STRING]... [file]\n"), "\(actual)")
                #expect(actual.stdout.contains("See 'qemu-io -c help' for information on available commands."))
                (expected.stdout, actual.stdout) = ("", "")
            }
            #expect(actual == expected, "\(arguments)")
        }
    }

    static func dropTimings(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains(" ops; ") }.joined(separator: "\n")
    }
}
