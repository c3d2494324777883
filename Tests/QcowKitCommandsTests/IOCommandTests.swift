// `qcowkit io` run in-process on scratch raw images: command dispatch and
// its messages, the effects of writes, zero writes and discards on the
// file, and the probed-raw restrictions. (Byte-for-byte comparisons with
// qemu-io itself are in the interop suite.)
import Foundation
import Testing
@testable import QcowKitCommands

@Suite("qcowkit io commands, in-process")
struct IOCommandTests {
    /// A scratch directory with a 1 MiB raw image "disk.raw".
    final class Scratch {
        let directory: URL
        var image: String { directory.appendingPathComponent("disk.raw").path }

        init(size: Int = 1 << 20) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("qcowkit-io-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try #require(FileManager.default.createFile(atPath: image, contents: nil))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
            try handle.truncate(atOffset: UInt64(size))
            try handle.close()
        }

        func bytes() throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: image))) }

        deinit { try? FileManager.default.removeItem(at: directory) }
    }

    struct Run {
        var status: Int32
        var output: String
        var error: String
        /// Output with the throughput lines (the only timing-dependent text) dropped.
        var stableOutput: String {
            output.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.contains(" ops; ") }.joined(separator: "\n")
        }
    }

    private func io(_ arguments: [String], input: [String] = []) -> Run {
        let capture = IOCapture()
        var lines = input[...]
        let status = IOProgram.run(arguments, console: capture.console, readLine: { lines.popFirst() })
        return Run(status: status, output: capture.output, error: capture.errorText)
    }

    private func commands(_ list: [String]) -> [String] { list.flatMap { ["-c", $0] } }

    @Test("write then read back with pattern checks and a dump")
    func writeAndRead() throws {
        let scratch = try Scratch()
        let run = io(["-f", "raw"] + commands(["write -P 0x41 1000 100", "read -P 0x41 1000 100",
                                               "read -v 1096 8", "read -P 0x41 999 2"]) + [scratch.image])
        #expect(run.status == 1)   // the last pattern check fails
        #expect(run.stableOutput == """
            wrote 100/100 bytes at offset 1000
            read 100/100 bytes at offset 1000
            00000448:  41 41 41 41 00 00 00 00  AAAA....
            read 8/8 bytes at offset 1096
            Pattern verification failed at offset 999, 2 bytes
            read 2/2 bytes at offset 999

            """)
        #expect(run.error.isEmpty)
        let bytes = try scratch.bytes()
        #expect(bytes[1000..<1100].allSatisfy { $0 == 0x41 } && bytes[999] == 0 && bytes[1100] == 0)
    }

    @Test("zero writes, unmapping zero writes and discards leave zeroes")
    func zeroesAndDiscard() throws {
        let scratch = try Scratch()
        let run = io(["-f", "raw"] + commands(["write 0 256k", "write -z 4k 4k", "write -z -u 64k 64k",
                                               "discard 128k 64k", "write -z 1000 24", "flush"]) + [scratch.image])
        #expect(run.status == 0 && run.error.isEmpty)
        let bytes = try scratch.bytes()
        let zeroRanges = [4096..<8192, 65536..<131_072, 131_072..<196_608, 1000..<1024]
        for range in zeroRanges { #expect(bytes[range].allSatisfy { $0 == 0 }, "\(range)") }
        #expect(bytes[0..<1000].allSatisfy { $0 == 0xcd } && bytes[8192..<65536].allSatisfy { $0 == 0xcd })
        #expect(bytes[196_608..<262_144].allSatisfy { $0 == 0xcd })
        #expect(bytes.count == 1 << 20)
    }

    @Test("requests past the end fail with EIO and the session goes on")
    func outOfRange() throws {
        let scratch = try Scratch()
        let run = io(["-f", "raw"] + commands(["read 1M 1", "write 1023k 2k", "write -z 1M 1", "discard 1M 1",
                                               "alloc 1M", "length"]) + [scratch.image])
        #expect(run.status == 1)
        #expect(run.output == """
            read failed: Input/output error
            write failed: Input/output error
            write failed: Input/output error
            discard failed: Input/output error
            0/0 bytes allocated at offset 1 MiB
            1 MiB

            """)
    }

    @Test("usage errors: counts on stderr, synopsis on stdout")
    func usageErrors() throws {
        let scratch = try Scratch()
        let run = io(["-f", "raw"] + commands(["read 0", "r -x 0 1", "bogus", "alloc", "map 1", "write -u 0 1",
                                               "write -c 1 512", "read 0 3G", "read -P 256 0 1"]) + [scratch.image])
        #expect(run.status == 1)
        #expect(run.error == """
            bad argument count 1 to read, expected at least 2 arguments
            r: invalid option -- 'x'
            command "bogus" not found
            bad argument count 0 to alloc, expected between 1 and 2 arguments
            bad argument count 1 to map, expected 0 arguments

            """)
        #expect(run.output == """
            read [-abCqv] [-P pattern [-s off] [-l len]] off len -- reads a number of bytes at a specified offset
            -u requires -z to be specified
            1 is not a sector-aligned value for 'offset'
            length cannot exceed 2147483136, given 3G
            256 is not a valid pattern byte

            """)
    }

    @Test("help lists the commands in order and explains one")
    func help() {
        let all = io(["-c", "help"])
        #expect(all.status == 0)
        let names = all.output.split(separator: "\n").dropLast(2).map { String($0.split(separator: " ")[0]) }
        #expect(names == names.sorted() && names.contains("read") && names.contains("aio_flush"))
        #expect(all.output.hasSuffix("\nUse 'help commandname' for extended help.\n"))
        #expect(io(["-c", "help w"]).output.hasPrefix(
            "w [-bcCfnquz] [-P pattern | -s source_file] off len -- writes a number of bytes at a specified offset\n\n"))
        let missing = io(["-c", "help nope"])
        #expect(missing.output == "command nope not found\n" && missing.status == 1)
    }

    @Test("without an image only global commands run")
    func noImage() {
        let run = io(["-c", "length", "-c", "sleep 1", "-c", "help help"])
        #expect(run.error == "no file open, try 'help open'\n")
        #expect(run.output == "help [command] -- help for one or all commands\n")
        #expect(run.status == 1)
    }

    @Test("read-only images refuse writes before parsing them")
    func readOnly() throws {
        let scratch = try Scratch()
        let run = io(["-r", "-f", "raw"] + commands(["write -x", "write 0 1", "discard 0 1", "flush", "read 0 1"])
                     + [scratch.image])
        #expect(run.error == """
            bad argument count 1 to write, expected at least 2 arguments
            qcowkit: Block node is read-only
            qcowkit: Block node is read-only

            """)
        #expect(run.stableOutput == "read 1/1 bytes at offset 0\n")
        #expect(run.status == 1)
    }

    @Test("interactive: a prompt per line, until quit or end of input")
    func interactive() throws {
        let scratch = try Scratch()
        let run = io(["-f", "raw", scratch.image], input: ["length\n", "\n", "q\n", "length\n"])
        #expect(run.output == "qemu-io> 1 MiB\nqemu-io> qemu-io> ")
        #expect(run.status == 0)
        let eof = io(["-f", "raw", scratch.image], input: ["bogus"])
        #expect(eof.output == "qemu-io> qemu-io> " && eof.status == 1)
    }

    @Test("a probed raw image keeps other formats' headers out of sector 0")
    func probedRaw() throws {
        let scratch = try Scratch()
        let header = scratch.directory.appendingPathComponent("header.bin")
        try Data([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]).write(to: header)
        let probed = io(commands(["write -s \(header.path) 0 512", "write -zn 1 511", "write -zn 512 512",
                                  "write -P 0x51 1 3"]) + [scratch.image])
        #expect(probed.error.hasPrefix("WARNING: Image format was not specified for '\(scratch.image)' and probing guessed raw.\n"))
        #expect(probed.stableOutput == """
            write failed: Operation not permitted
            write failed: Operation not supported
            wrote 512/512 bytes at offset 512

            """ + "wrote 3/3 bytes at offset 1\n")
        let named = io(["-f", "raw"] + commands(["write -zn 1 511", "write -s \(header.path) 0 512"]) + [scratch.image])
        #expect(named.error.isEmpty && named.status == 0)
        #expect(try scratch.bytes().prefix(8) == [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3])
        // The image now probes as qcow2 (and is not a valid one).
        let reopened = io(["-c", "length", scratch.image])
        #expect(reopened.status == 1 && reopened.error.hasPrefix("qcowkit: can't open device \(scratch.image): "))
    }

    @Test("discard=ignore keeps the data; cache=unsafe and -t checks")
    func openModes() throws {
        let scratch = try Scratch()
        _ = io(["-f", "raw", "-c", "write 0 64k", scratch.image])
        let run = io(["-f", "raw", "-d", "ignore", "-t", "unsafe"] + commands(["discard 0 64k", "write -z -u 0 4k",
                                                                               "read -P 0 0 4k", "read -P 0xcd 4k 60k"])
                     + [scratch.image])
        #expect(run.status == 0 && run.error.isEmpty)
        #expect(io(["-t", "bogus", scratch.image]).error == "qcowkit: Invalid cache option: bogus\n")
        #expect(io(["-U", scratch.image]).error
                == "qcowkit: can't open device \(scratch.image): force-share=on can only be used with read-only images\n")
    }

    @Test("open, close and reopen within a session")
    func openClose() throws {
        let scratch = try Scratch()
        let run = io(commands(["close", "length", "open -r -o driver=raw \(scratch.image)", "write 0 1",
                               "reopen -w", "write -q 0 1", "open \(scratch.image)", "reopen -r -w"]))
        #expect(run.error == """
            no file open, try 'help open'
            no file open, try 'help open'
            qcowkit: Block node is read-only
            qcowkit: file open already, try 'help close'
            qcowkit: Only one -r/-w option may be given

            """)
        #expect(run.status == 1)
        #expect(try scratch.bytes()[0] == 0xcd)
    }

    @Test("block options go through the verbs' reader: raw's offset and size are refused, discard=ignore taken")
    func blockOptions() throws {
        let scratch = try Scratch()
        _ = io(["-f", "raw", "-c", "write 0 64k", scratch.image])
        let refused = io(["--image-opts", "-c", "length", "driver=raw,file.filename=\(scratch.image),size=512"])
        #expect(refused.status == 1 && refused.error == "qcowkit: can't open: Option 'size' is not supported by qcowkit\n")
        let opened = io(commands(["open -o driver=raw,discard=ignore \(scratch.image)", "discard 0 64k", "read -q -P 0xcd 0 64k"]))
        #expect(opened.status == 0 && opened.error.isEmpty)
    }
}
