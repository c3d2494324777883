// `qcowkit io` against qemu-io 7.2 on raw images, writes included: the same
// commands on copies of the same image must print the same (timings aside),
// exit alike, and leave the same bytes and the same data/hole layout.
import Foundation
import Testing

@Suite("qcowkit io = qemu-io on raw images")
struct IOInteropRawTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var commands: [String]
        var options: [String] = []
        var testDescription: String { (options + commands).joined(separator: " | ") }
    }

    /// A 1 MiB raw image with data at 64k..128k and a 1000-byte one.
    private func fixtures() throws -> IOTwinDirectories {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "raw", "disk.raw", "1M"],
            ["qemu-io", "-f", "raw", "-c", "write -P 0x55 64k 64k", "-c", "write -P 0x66 512k 4k", "disk.raw"],
            ["truncate", "-s", "1000", "odd.raw"],
        ])
        return twins
    }

    static let writeCases: [Case] = [
        Case(commands: ["write 0 64k", "write -P 0x41 1000 100", "read -v 990 130", "read -P 0x41 1000 100"]),
        Case(commands: ["write -z 0 4k", "write -z -u 4096 4k", "write -zu 100 5000", "write -z 70k 4k",
                        "read -P 0 0 8k", "map", "alloc 0 1M"]),
        Case(commands: ["write -zn 0 1", "write -zn 0 512", "write -zn 100 1k", "write -zn 512 1k", "write -zun 1 2"]),
        Case(commands: ["discard 64k 4k", "discard 100 5000", "discard 0 0", "read -P 0 64k 4k", "read -P 0x55 68k 60k"]),
        Case(commands: ["write -c 0 64k", "write -c 1 512", "write -c 0 511", "write -b 0 512", "write -b 1 1",
                        "write -bz 0 1", "write -f -c 0 1", "write -f 0 1", "write -b 1G 512", "read -b 1G 512",
                        "write -b 9223372036854775296 512", "read -b 9223372036854775296 512"]),
        Case(commands: ["write -u 0 1", "write -n 0 1", "write -z -P 1 0 1", "write -P 1 -s x 0 1",
                        "write -s /nonexistent 0 1", "write -s /dev/null 0 1", "write 0 3G", "write -z 0 3G",
                        "write -zn 0 3G", "discard 0 3G"]),
        Case(commands: ["write 0 0", "write -z 0 0", "read 0 0", "write 1M 1", "write 1023k 2k", "write -z 1M 1",
                        "discard 1M 1", "discard 1023k 2k", "write 1M 0", "write 2M 0"]),
        Case(commands: ["write -C 0 512", "discard -C 0 512", "write -q 0 512", "discard -q 0 512", "flush",
                        "writev -P 7 0 512 1k 3", "writev 1M 1", "readv -P 7 0 1539", "readv -v 0 8 8"]),
        Case(commands: ["aio_write -P 9 0 1k", "aio_flush", "aio_write -z 1k 1k", "aio_flush", "aio_read -P 9 0 1k",
                        "aio_flush", "aio_write -zu 0 512 1", "aio_write -u 0 512", "aio_write 2M 1", "aio_flush",
                        "aio_write -i 0 1", "aio_read -i 0 1"]),
        Case(commands: ["write -P 0x51 0 4", "write -P 0x41 512 4", "read -v 0 8"]),
        Case(commands: ["write -z 0 4k", "write 512k 4k"], options: ["-d", "ignore"]),
        Case(commands: ["discard 64k 64k", "write -zu 512k 4k", "alloc 0 1M", "read -P 0x55 64k 64k"], options: ["-d", "ignore"]),
        Case(commands: ["write 0 4k", "write -z 4k 4k", "discard 8k 4k", "flush"], options: ["-t", "none"]),
        Case(commands: ["write 0 1", "write -z 0 1", "discard 0 1", "flush", "write -c 0 64k", "aio_write 0 1",
                        "writev 0 1", "read 0 1", "write"], options: ["-r"]),
    ]

    @Test("raw writes print, exit and leave the image as qemu-io's do", arguments: writeCases)
    func writes(_ testCase: Case) throws {
        for format in [["-f", "raw"], []] {   // named, and probed (with its sector-0 restrictions)
            let twins = try fixtures()
            let arguments = format + testCase.options + testCase.commands.flatMap { ["-c", $0] } + ["disk.raw"]
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(arguments)")
            #expect(try twins.bytes("disk.raw", in: twins.ours) == twins.bytes("disk.raw", in: twins.qemu), "\(arguments)")
            let maps = try twins.maps("disk.raw", format: "raw")
            #expect(maps.ours == maps.qemu, "\(arguments)")
        }
    }

    @Test("an image that is not a whole number of sectors")
    func oddSize() throws {
        let twins = try fixtures()
        for format in [["-f", "raw"], []] {
            try twins.syncCopies()
            let arguments = format + ["-c", "length", "-c", "read -v 990 34", "-c", "write -P 3 996 10",
                                      "-c", "write -z 1010 14", "-c", "read -v 990 34", "-c", "map", "-c", "alloc 0 2k",
                                      "-c", "write -P 4 0 1", "-c", "write -zu 512 10", "-c", "discard 100 900", "odd.raw"]
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(arguments)")
            // Probed, partial sectors are written whole: the file grows to 1024 bytes as with QEMU.
            #expect(try twins.bytes("odd.raw", in: twins.ours) == twins.bytes("odd.raw", in: twins.qemu), "\(arguments)")
        }
    }

    @Test("a header written to sector 0 of a probed image is refused")
    func probedHeader() throws {
        let twins = try fixtures()
        try twins.prepare([["qemu-img", "create", "-q", "-f", "qcow2", "header.qcow2", "1M"]])
        for format in [["-f", "raw"], []] {
            try twins.syncCopies()
            let arguments = format + ["-c", "write -s header.qcow2 0 512", "-c", "write -s header.qcow2 0 4k",
                                      "-c", "read -v 0 16", "disk.raw"]
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(arguments)")
            #expect(try twins.bytes("disk.raw", in: twins.ours) == twins.bytes("disk.raw", in: twins.qemu))
        }
    }

    @Test("usage errors, bad numbers and getopt messages", arguments: [
        "read --foo 0 1", "read -P", "read 0 1 -P", "read -- -1 1", "read -P1 -qv 0 1", "read - 1", "read -Px 0 1",
        "read -P -1 0 1", "read -P 010 0 1", "read -P 0x 0 1", "read -x 0 1", "read 0", "r 0 1 2", "bogus", "help bogus",
        "help r", "help q", "help ?", "? help", "read -l 1 0 1", "read -P 0 -s 2 0 1", "read -P 0 -l 2 0 1",
        "read -P 0 -s x 0 1", "read -b 1 1", "read -b 0 1", "alloc x", "alloc 0 x", "alloc 0 0", "alloc 0x1k 0x1",
        "map x", "length 1", "sleep x", "sleep 1", "sleep -1", "sigraise x", "sigraise 99", "sigraise 0", "break a b",
        "remove_break a", "resume a", "readv 0 3G", "readv 0 1G 1G 1G", "readv 0 1 -1", "aio_read -i x",
        "aio_write -u 0 512", "aio_write 0 x", "q", "quit 1 2", "read 0 1.5k", "read 1e3 1", "read 0 1.k",
        "read 0x10 0x200", "read 0 3G", "discard -x 0 1", "discard 0", "discard 0 x", "flush 1", "reopen -r -w",
        "reopen -c bogus", "reopen x", "reopen -o foo=bar", "open -x", "open a b", "help", "help read", "truncate -x 1", "t",
        "help write", "help aio_write", "help open",
    ])
    func usage(_ command: String) throws {
        let twins = try fixtures()
        let arguments = ["-f", "raw", "-c", command, "-c", "read -v 0 8", "disk.raw"]
        let (qemu, ours) = try twins.run(arguments)
        #expect(ours == qemu)
    }

    @Test("opening, closing and reopening within a session")
    func openClose() throws {
        let twins = try fixtures()
        for commands in [
            ["close", "length", "close", "open -r disk.raw", "write 0 1", "open disk.raw", "open -o driver=raw disk.raw"],
            ["close", "open -o driver=raw disk.raw", "length", "close", "open -o driver=raw -o foo=bar disk.raw",
             "open nonexist", "open -f raw x", "open", "open a b", "open -o driver=qcow2",
             "open -o driver=raw,file.filename=disk.raw", "info"],
            ["reopen -r", "write 0 1", "reopen -w", "write 0 1", "reopen -c none", "write -z 0 1"],
            ["reopen -o foo", "reopen -o noread-only", "reopen -o cache.no-flush", "reopen -o foo -r -w", "write 0 1"],
            ["close", "open -o foo=bar disk.raw", "open -o read-only=x disk.raw", "open -o driver=raw,file.driver=foo disk.raw",
             "open -o driver=raw,cache.direct=x disk.raw", "open -r -t none -d ignore -i threads -k -C -U disk.raw", "info"],
            ["close", "open -o filename=x disk.raw", "open -o driver=raw,file.locking=x disk.raw",
             "open -o foo", "open -o nofoo disk.raw", "open -o file.aio=x disk.raw", "open -o file=x disk.raw", "length"],
        ] {
            try twins.syncCopies()
            let arguments = commands.flatMap { ["-c", $0] } + ["disk.raw"]
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(commands)")
            #expect(try twins.bytes("disk.raw", in: twins.ours) == twins.bytes("disk.raw", in: twins.qemu))
        }
    }

    @Test("command line options and open errors", arguments: [
        ["-x", "disk.raw"], ["--bogus", "disk.raw"], ["disk.raw", "odd.raw"], ["-c"], ["--cmd"],
        ["--c", "length", "disk.raw"], ["--read-only=x", "disk.raw"], ["--read", "-c", "length", "disk.raw"],
        ["disk.raw", "-c", "length", "-r"], ["-c", "length", "--", "disk.raw"], ["-f"], ["-t", "bogus", "disk.raw"],
        ["-d", "bogus", "disk.raw"], ["-i", "bogus", "disk.raw"], ["-i", "io_uring", "-c", "length", "disk.raw"],
        ["--image-opts", "-f", "raw", "-c", "length", "driver=raw,file.filename=disk.raw"],
        ["--image-opts", "-c", "info", "driver=raw,file.filename=disk.raw,foo=bar"],
        ["--image-opts", "-c", "length", "file.filename=disk.raw"], ["--image-opts", "-c", "length", "disk.raw"],
        ["-U", "-c", "length", "disk.raw"], ["-U", "-r", "-c", "length", "disk.raw"], ["nonexist"], ["-c", "length"],
        ["-c", "length", "nonexist"], ["--format=raw", "--cmd=length", "disk.raw"], ["-f", "bogus", "-c", "length", "disk.raw"],
        ["-f", "qcow2", "-c", "length", "disk.raw"], ["-T", "foo", "-c", "length", "disk.raw"],
        ["-k", "-m", "-C", "-n", "-c", "length", "disk.raw"],
        // --image-opts through the verbs' block-options reader: qemu-io's QemuOpts has no implied key.
        ["--image-opts", "-c", "length", "nofoo,driver=raw,file.filename=disk.raw"],
        ["--image-opts", "-c", "length", "filename=disk.raw"], ["--image-opts", "-c", "length", "driver=raw,filename=disk.raw"],
        ["--image-opts", "-c", "length", "file.filename=disk.raw,foo=bar"],
        ["--image-opts", "-c", "length", "file.filename=nonexist,foo=bar"],
        ["--image-opts", "-c", "length", "file.filename=disk.raw,read-only=x"],
        ["--image-opts", "-c", "length", "driver=raw,file.filename=disk.raw,file.locking=x"],
        ["--image-opts", "-c", "length", "driver=raw,file.filename=disk.raw,force-share=on"],
        ["--image-opts", "-c", "length", "driver=raw,file.filename=disk.raw,read-only=on"],
        ["--image-opts", "-r", "-c", "length", "driver=raw,file.filename=disk.raw,force-share=on,read-only=on"],
        ["--image-opts", "-c", "length", "driver=raw,file.filename=disk.raw,noforce-share,discard=bogus"],
        ["--image-opts", "-c", "length", "driver=raw,file.filename=disk.raw,file.foo=1,foo=2"],
        ["--image-opts", "-c", "length", "driver=raw,file.filename=disk.raw,offset=x"],
        // --object: the one registry qemu-img verbs use, objects made as the options are read.
        ["--object", "foo,id=x", "-c", "length", "disk.raw"], ["-c", "length", "-f", "raw", "--object", "iothread,id=x", "disk.raw"],
        ["--object", "secret,id=s,data=x", "-f", "raw", "-c", "length", "disk.raw"], ["--object", "secret,id=s", "disk.raw"],
        ["--object", "help"], ["--object", "secret,help"], ["--object", "tls-creds-x509,id=t,dir=/nonexistent,endpoint=client", "disk.raw"],
    ])
    func commandLine(_ arguments: [String]) throws {
        let twins = try fixtures()
        var (qemu, ours) = try twins.run(arguments)
        // The usage text names QcowKit's program and options, so only its presence is compared.
        let usage = "Usage: qemu-io [OPTIONS]... [-c STRING]... [file]"
        if qemu.output.hasPrefix(usage) {
            #expect(ours.output.hasPrefix("Usage: qcowkit io [OPTIONS]... [-c STRING]... [file]"))
            qemu.output = ""
            ours.output = ""
        }
        #expect(ours == qemu)
    }

    @Test("interactive sessions read commands from standard input", arguments: [
        "length\n", "read 0 1\nbogus\nread 1M 1\n", "read -v 0 4\nquit\nlength\n", "", "length",
        "help q\r\n", "\n\n  \n", "read 0 " + String(repeating: " ", count: 1020) + "1\n",
    ])
    func interactive(_ input: String) throws {
        let twins = try fixtures()
        let (qemu, ours) = try twins.run(["-f", "raw", "disk.raw"], input: input)
        #expect(ours == qemu)
    }
}
