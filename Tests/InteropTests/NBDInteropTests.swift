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
