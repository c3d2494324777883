// `qcowkit nbd` against qemu-nbd 7.2 serving the same images, seen through
// clients we did not write: nbdinfo's JSON and maps, nbdcopy to and from the
// server (compared with cmp / qemu-img compare), qemu-img and qemu-io over
// nbd+unix URIs, and libnbd's Python binding for request-level checks whose
// printed outcomes (data digests, extents, error names) must be the same.
import Foundation
import Testing
import TestSupport

@Suite("qcowkit nbd = qemu-nbd 7.2 to NBD clients", .serialized)
struct NBDInteropTests {
    let scratch: ScratchDirectory
    var dir: String { scratch.path }

    init() throws {
        scratch = try ScratchDirectory()
        // A chain with data in both layers, a zero cluster and unallocated
        // space, and a sparse raw image with an unaligned tail.
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", dir + "/base.qcow2", "64M")
        try QemuOracle.qemuIO(dir + "/base.qcow2", ["write -P 1 0 1M", "write -z 2M 1M", "write -P 3 5M 64k"])
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir + "/top.qcow2")
        try QemuOracle.qemuIO(dir + "/top.qcow2", ["write -P 2 512k 1M", "write -z 5M 4k", "write -P 4 7M 100k"])
        try QemuOracle.qemuImg("create", "-q", "-f", "raw", dir + "/disk.raw", "8M")
        try QemuOracle.qemuIO(dir + "/disk.raw", ["write -P 9 1M 64k", "write -P 8 3M 4k"], format: "raw")
    }

    /// What the clients see of a server started with `arguments`: nbdinfo's
    /// JSON, its export list, and the maps of the contexts named.
    func view(qemu: Bool, _ arguments: [String], export: String = "", depth: Bool) throws -> String {
        let server = try NBDServerProcess(qemu: qemu, socket: dir + "/\(qemu ? "q" : "k")\(arguments.count).sock",
                                          arguments: ["-t"] + arguments, in: dir)
        defer { server.stop() }
        let uri = server.uri(export: export)
        var text = try NBDClients.nbdinfo(["--json", uri])
        text += try NBDClients.nbdinfo(["--list", "--json", server.uri])
        text += try NBDClients.nbdinfo(["--map", uri])
        text += try NBDClients.nbdinfo(["--map", "--totals", uri])
        if depth { text += try NBDClients.nbdinfo(["--map=qemu:allocation-depth", uri]) }
        return text.replacingOccurrences(of: server.socket, with: "SOCKET")
    }

    @Test("nbdinfo --json, --list and --map (base:allocation, qemu:allocation-depth) equal qemu-nbd's",
          arguments: [
              (["-f", "qcow2", "-A", "-x", "exp", "-D", "an export", "top.qcow2"], "exp", true),
              (["-f", "qcow2", "-r", "-e", "2", "top.qcow2"], "", false),
              (["-A", "top.qcow2"], "", true),
              (["-f", "raw", "-A", "disk.raw"], "", true),
              (["-f", "qcow2", "-s", "-A", "base.qcow2"], "", true),
          ])
    func nbdinfoEqualsQemu(_ arguments: [String], _ export: String, _ depth: Bool) throws {
        let ours = try view(qemu: false, arguments, export: export, depth: depth)
        let theirs = try view(qemu: true, arguments, export: export, depth: depth)
        #expect(ours == theirs)
        #expect(ours.contains("\"export-size\""))
    }

    @Test("nbdcopy from the server gives the image's guest data; to it, a copy qemu-img finds equal and clean")
    func nbdcopyBothWays() throws {
        let server = try NBDServerProcess(qemu: false, socket: dir + "/c.sock", arguments: ["-t", "-r", "top.qcow2"],
                                          in: dir)
        try NBDClients.nbdcopy([server.uri, dir + "/copy.raw"])
        server.stop()
        try QemuOracle.qemuImg("convert", "-O", "raw", dir + "/top.qcow2", dir + "/expected.raw")
        let copied = try Data(contentsOf: URL(fileURLWithPath: dir + "/copy.raw"))
        let expected = try Data(contentsOf: URL(fileURLWithPath: dir + "/expected.raw"))
        #expect(copied == expected)

        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", dir + "/target.qcow2", "64M")
        let target = try NBDServerProcess(qemu: false, socket: dir + "/t.sock",
                                          arguments: ["-t", "-f", "qcow2", "--discard=unmap", "target.qcow2"], in: dir)
        try NBDClients.nbdcopy(["--flush", dir + "/expected.raw", target.uri])
        #expect(target.stop().status == 0)
        let compare = try QemuOracle.qemuImg("compare", "-f", "raw", "-F", "qcow2", dir + "/expected.raw",
                                             dir + "/target.qcow2", check: false)
        #expect(compare.status == 0, "\(compare.output)")
        let check = try QemuOracle.qemuImg("check", dir + "/target.qcow2", check: false)
        #expect(check.status == 0, "\(check.output)")
    }

    @Test("qemu-img and qemu-io work over nbd+unix URIs as with qemu-nbd")
    func qemuToolsOverNBD() throws {
        var outputs: [String] = []
        for qemu in [true, false] {
            let copy = dir + "/q\(qemu).qcow2"
            try FileManager.default.copyItem(atPath: dir + "/base.qcow2", toPath: copy)
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/io.sock", arguments: ["-t", "-f", "qcow2", copy],
                                              in: dir)
            var text = try QemuOracle.qemuImg("info", server.uri).output
            let io = try QemuOracle.run(["qemu-io", "-f", "raw", "-c", "write -P 0x55 4095 8193",
                                         "-c", "read -P 0x55 4095 8193", "-c", "write -z 1M 64k",
                                         "-c", "read -P 0 1M 64k", "-c", "read -P 1 0 4095", server.uri])
            // Timing lines ("1 ops; 00.00 sec (...)") vary from run to run.
            text += io.output.split(separator: "\n").filter { !$0.contains(" ops; ") }.joined(separator: "\n")
            text += try QemuOracle.qemuImg("map", "--output=json", "-f", "raw", server.uri).output
            server.stop()
            text += try QemuOracle.qemuImg("compare", "-f", "qcow2", copy, dir + "/q\(true).qcow2", check: false).output
            outputs.append(text)
        }
        #expect(outputs[0] == outputs[1])
        #expect(outputs[1].contains("Images are identical."))
    }

    @Test("Without -t the server exits 0 once its client disconnects, removing its socket")
    func exitsAfterClient() throws {
        for qemu in [true, false] {
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/once.sock", arguments: ["-r", "top.qcow2"],
                                              in: dir)
            _ = try NBDClients.nbdinfo(["--size", server.uri])
            #expect(server.waitForExit() == 0)
            #expect(!FileManager.default.fileExists(atPath: dir + "/once.sock"))
        }
    }

    @Test("While served writable the image is locked as qemu-nbd locks it")
    func locks() throws {
        var outcomes: [String] = []
        for qemu in [true, false] {
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/l.sock", arguments: ["-t", "top.qcow2"], in: dir)
            var text = ""
            for command in [["qemu-io", "-c", "read 0 512", "top.qcow2"], ["qemu-io", "-r", "-c", "read 0 512", "top.qcow2"],
                            ["qemu-img", "info", "top.qcow2"], ["qemu-img", "resize", "base.qcow2", "+1M"]] {
                let run = try QemuOracle.run(command, in: URL(fileURLWithPath: dir), check: false)
                text += "\(run.status) \(run.errorOutput)"
            }
            server.stop()
            outcomes.append(text.replacingOccurrences(of: #"\d+(\.\d+)? (KiB|MiB)"#, with: "SIZE",
                                                      options: .regularExpression))
        }
        #expect(outcomes[0] == outcomes[1])
    }
}

@Suite("qcowkit nbd = qemu-nbd 7.2, request by request", .serialized)
struct NBDRequestInteropTests {
    let scratch: ScratchDirectory
    var dir: String { scratch.path }

    init() throws {
        scratch = try ScratchDirectory()
        for (name, compat) in [("base", "1.1"), ("old", "0.10")] {
            try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=\(compat)", dir + "/\(name).qcow2", "16M")
            try QemuOracle.qemuIO(dir + "/\(name).qcow2", ["write -P 1 0 1M", "write -z 2M 1M", "write -P 3 5M 64k"])
        }
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir + "/top.qcow2")
        try QemuOracle.qemuIO(dir + "/top.qcow2", ["write -P 2 512k 1M", "write -z 5M 4k", "write -P 4 7M 100k"])
        try QemuOracle.qemuImg("create", "-q", "-f", "raw", dir + "/disk.raw", "8M")
        try QemuOracle.qemuIO(dir + "/disk.raw", ["write -P 9 1M 64k", "write -P 8 3M 4k"], format: "raw")
    }

    /// The probe's printout against a server started with `arguments` on a
    /// fresh copy of the fixtures.
    func probe(qemu: Bool, _ arguments: [String]) throws -> String {
        let copy = dir + (qemu ? "/qemu" : "/ours")
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for name in ["base.qcow2", "old.qcow2", "top.qcow2", "disk.raw"] {
            try FileManager.default.copyItem(atPath: dir + "/" + name, toPath: copy + "/" + name)
        }
        // Two clients at once: the probe opens a second connection.
        let shared = arguments.contains("-e") ? [] : ["-e", "2"]
        let server = try NBDServerProcess(qemu: qemu, socket: copy + "/s.sock", arguments: ["-t"] + shared + arguments,
                                          in: copy)
        defer { server.stop() }
        return try NBDClients.script(NBDRequestScript.source, [server.uri], in: dir)
    }

    @Test("Reads, writes, zeroes, trims, caches, flushes, block status and bad requests answer as qemu-nbd's",
          arguments: [
              ["-f", "qcow2", "-A", "--discard=unmap", "top.qcow2"],
              ["-f", "qcow2", "top.qcow2"],
              ["-f", "qcow2", "-A", "old.qcow2"],
              ["-f", "raw", "--discard=unmap", "-A", "disk.raw"],
              ["-f", "qcow2", "-r", "-A", "-e", "3", "top.qcow2"],
              ["-f", "qcow2", "--detect-zeroes=on", "--cache=writethrough", "top.qcow2"],
          ])
    func requestsEqualQemu(_ arguments: [String]) throws {
        let ours = try probe(qemu: false, arguments)
        let theirs = try probe(qemu: true, arguments)
        let oursLines = ours.split(separator: "\n"), theirLines = theirs.split(separator: "\n")
        for (index, line) in theirLines.enumerated() where index >= oursLines.count || oursLines[index] != line {
            Issue.record("first difference at line \(index + 1):\n qemu-nbd: \(line)\n qcowkit:  \(index < oursLines.count ? oursLines[index] : "(missing)")")
            break
        }
        #expect(oursLines.count == theirLines.count)
        #expect(ours.contains("other connection still served ok"))
    }
}

extension NBDInteropTests {
    @Test("The listen backlog is qemu-nbd's: SOMAXCONN with -t or -e 0, else -e's number",
          arguments: [["-t"], ["-e", "3"], [], ["-e", "0"]])
    func listenBacklog(_ arguments: [String]) throws {
        let ss = try TestTools.program("ss", package: "iproute2")
        var backlogs: [String] = []
        for qemu in [true, false] {
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/backlog\(qemu).sock",
                                              arguments: arguments + ["top.qcow2"], in: dir)
            defer { server.stop() }
            // ss -lx: Netid State Recv-Q Send-Q(the backlog) Local ...
            let line = try QemuOracle.run([ss, "-lx"]).output.split(separator: "\n").first { $0.contains(server.socket) }
            backlogs.append(line.map { String($0.split(separator: " ", omittingEmptySubsequences: true)[3]) } ?? "none")
            // Served before it is stopped: qemu-nbd binds before it opens the
            // image, and a SIGTERM before it serves is lost (it would not exit).
            _ = try NBDClients.nbdinfo(["--size", server.uri])
        }
        #expect(backlogs[0] == backlogs[1])
        #expect(backlogs[0] != "none")
    }
}

extension NBDRequestInteropTests {
    @Test("CACHE copies up as qemu-nbd's copy-on-read does: a run of backing data and zeroes as data, a zero run as zeroes")
    func cacheLeavesTheSameImage() throws {
        var maps: [String] = []
        for qemu in [true, false] {
            let copy = dir + (qemu ? "/cq" : "/ck")
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", copy + "/b.qcow2", "4M")
            try QemuOracle.qemuIO(copy + "/b.qcow2", ["write -P 1 0 1M"])
            try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", copy + "/t.qcow2")
            try QemuOracle.qemuIO(copy + "/t.qcow2", ["write -P 2 2M 64k"])
            let server = try NBDServerProcess(qemu: qemu, socket: copy + "/s.sock", arguments: ["-t", "t.qcow2"], in: copy)
            let reply = try NBDClients.cacheFirst4MiB(server.uri, in: copy)
            #expect(reply == "cached\n")
            server.stop()
            maps.append(try QemuOracle.run(["qemu-img", "map", "--output=json", copy + "/t.qcow2"]).output)
        }
        #expect(maps[0] == maps[1])
        #expect(maps[0].contains(#"{ "start": 0, "length": 2097152, "depth": 0, "present": true, "zero": false, "data": true"#))
    }
}

@Suite("qcowkit as qemu-nbd: command-line errors as qemu-nbd 7.2's")
struct NBDCommandLineInteropTests {
    @Test("Bad command lines get qemu-nbd's messages and exit status")
    func badCommandLines() throws {
        let scratch = try ScratchDirectory()
        let dir = scratch.path
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", dir + "/img.qcow2", "1M")
        let programs = try QemuNBDCommandLines(in: dir)
        let sock = dir + "/s.sock"
        _ = FileManager.default.createFile(atPath: dir + "/regular", contents: Data(count: 4096))
        let cases: [[String]] = [
            [], ["--help"], ["a", "b"], ["-k", "rel.sock", "img.qcow2"], ["-e", "x", "img.qcow2"], ["-e", "-1", "img.qcow2"],
            ["--cache=foo", "img.qcow2"], ["--discard=foo", "img.qcow2"], ["--detect-zeroes=foo", "img.qcow2"],
            ["--detect-zeroes=unmap", "img.qcow2"], ["-n", "--cache=none", "img.qcow2"], ["--aio=foo", "img.qcow2"],
            ["--discard=unmap", "--discard=unmap", "img.qcow2"], ["-x"], ["--bogus", "img.qcow2"], ["-Z", "img.qcow2"],
            ["--tls-authz=a", "img.qcow2"], ["--tls-creds=a", "img.qcow2"], ["--tls-creds=a", "-k", sock, "img.qcow2"],
            ["--tls-hostname=h", "img.qcow2"], ["-k", dir + "/none/x.sock", "img.qcow2"], ["-k", sock, "none.qcow2"],
            ["-k", sock, "-f", "foo", "img.qcow2"], ["-k", sock, "-B", "bm", "img.qcow2"],
            ["--image-opts", "-f", "qcow2", "img.qcow2"], ["-L", "img.qcow2"], ["-L", "-x", "e"], ["-L", "--fork"],
            ["-x", String(repeating: "n", count: 4097), "img.qcow2"],
            ["-D", String(repeating: "d", count: 4097), "img.qcow2"],
            ["-d", dir + "/nbd-none"],
            // No such device: qemu-nbd serves, then its kernel client fails
            // to open it (-v only keeps it in the foreground).
            ["-c", dir + "/nbd-none", "-k", sock, "img.qcow2"], ["-v", "-c", dir + "/nbd-none", "-k", sock, "img.qcow2"],
            ["-c", dir + "/nbd-none", "-k", sock, "none.qcow2"], ["-c", dir + "/nbd-none", "--tls-creds=a", "img.qcow2"],
            ["-c", dir + "/nbd-qcowkit-test", "img.qcow2"],
            // Files that are no NBD device: the kernel refuses the first ioctl;
            // -d's ioctls fail unreported. An export the client cannot find.
            ["-c", "/dev/null", "-k", sock, "img.qcow2"], ["-v", "-c", "/dev/null", "-k", sock, "img.qcow2"],
            ["-c", dir + "/regular", "-k", sock, "img.qcow2"], ["-c", "/dev/null", "-x", "e", "-k", sock, "img.qcow2"],
            ["-d", "/dev/null"], ["-d", dir + "/regular"],
        ]
        defer { unlink("/var/lock/qemu-nbd-nbd-qcowkit-test") }  // qemu-nbd's default socket for it
        for arguments in cases {
            let outcomes = try programs.outcomes(arguments, socket: sock)
            #expect(outcomes[0] == outcomes[1], "qemu-nbd \(arguments.joined(separator: " "))")
        }
    }
}
