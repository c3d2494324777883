// `qcowkit nbd -B BITMAP` (the qemu:dirty-bitmap:NAME meta context) and
// `-l SNAPSHOT` against qemu-nbd 7.2 on the same images: nbdinfo's JSON
// (contexts listed) and maps, nbdcopy of a loaded snapshot, dirty bits
// gained by writes through a writable export, and the errors for bitmaps
// and snapshots that cannot be served.
import Foundation
import Testing
import TestSupport

@Suite("qcowkit nbd -B/-l = qemu-nbd 7.2", .serialized)
struct NBDBitmapInteropTests {
    let scratch: ScratchDirectory
    var dir: String { scratch.path }

    init() throws {
        scratch = try ScratchDirectory()
        // Data before an internal snapshot; then bitmaps of two
        // granularities (one disabled) and writes they track, one
        // unaligned and one across a 64 KiB boundary.
        let image = dir + "/bm.qcow2"
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", image, "16M")
        try QemuOracle.qemuIO(image, ["write -P 1 0 64k", "write -P 2 1M 128k"])
        try QemuOracle.qemuImg("snapshot", "-c", "snap1", image)
        try QemuOracle.qemuImg("bitmap", "--add", image, "b1")
        try QemuOracle.qemuImg("bitmap", "--add", "-g", "128k", image, "b2")
        try QemuOracle.qemuImg("bitmap", "--add", "--disable", image, "bdis")
        try QemuOracle.qemuIO(image, ["write -P 3 100k 10k", "write -P 4 2M 300k", "write -P 5 15M 1M"])
        try QemuOracle.qemuIO(image, ["write -P 6 8M 4k"])
    }

    /// nbdinfo's JSON and the maps of `contexts` for a server started with `arguments`.
    func view(qemu: Bool, _ arguments: [String], contexts: [String]) throws -> String {
        let server = try NBDServerProcess(qemu: qemu, socket: dir + "/\(qemu ? "q" : "k").sock",
                                          arguments: ["-t"] + arguments, in: dir)
        defer { server.stop() }
        var text = try NBDClients.nbdinfo(["--json", server.uri])
        for context in contexts {
            text += context + "\n" + (try NBDClients.nbdinfo(["--map=" + context, server.uri]))
        }
        return text.replacingOccurrences(of: server.socket, with: "SOCKET")
    }

    @Test("nbdinfo --json and --map of qemu:dirty-bitmap contexts equal qemu-nbd's",
          arguments: [
              ["-r", "-B", "b1", "-B", "b2", "-B", "bdis", "bm.qcow2"],
              ["-B", "b2", "-A", "bm.qcow2"],
              ["-r", "-l", "snap1", "-B", "b1", "bm.qcow2"],
              ["-s", "-B", "b2", "bm.qcow2"],
          ])
    func mapsEqualQemu(_ arguments: [String]) throws {
        let contexts = ["base:allocation", "qemu:dirty-bitmap:b1", "qemu:dirty-bitmap:b2", "qemu:dirty-bitmap:bdis"]
            .filter { $0 == "base:allocation" || arguments.contains(String($0.split(separator: ":").last!)) }
        let ours = try view(qemu: false, arguments, contexts: contexts)
        let theirs = try view(qemu: true, arguments, contexts: contexts)
        #expect(ours == theirs)
        #expect(ours.contains("\"qemu:dirty-bitmap:b"))
        #expect(ours.contains("dirty"))
    }

    /// Block status of two bitmaps and base:allocation over unaligned
    /// ranges, with and without NBD_CMD_FLAG_REQ_ONE, through libnbd.
    static let blockStatusScript = """
        import nbd, sys
        h = nbd.NBD()
        for context in ["qemu:dirty-bitmap:b2", "qemu:dirty-bitmap:b1", "base:allocation"]:
            h.add_meta_context(context)
        h.connect_uri(sys.argv[1])
        seen = []
        def extents(context, offset, entries, error):
            seen.append((context, offset, list(entries)))
        for offset, length, one in [(200000, 70000, 0), (200000, 2000000, 0), (100, 5000, 0), (0, 16 << 20, 1),
                                    (2100000, 1000, 1), (15 << 20, 1 << 20, 0)]:
            h.block_status(length, offset, extents, flags=nbd.CMD_FLAG_REQ_ONE if one else 0)
        print(seen)
        """

    @Test("BLOCK_STATUS of bitmap contexts over unaligned ranges and with REQ_ONE answers as qemu-nbd's")
    func blockStatusRequests() throws {
        var outputs: [String] = []
        for qemu in [true, false] {
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/bs\(qemu).sock",
                                              arguments: ["-t", "-r", "-B", "b1", "-B", "b2", "bm.qcow2"], in: dir)
            defer { server.stop() }
            outputs.append(try NBDClients.script(Self.blockStatusScript, [server.uri], in: dir))
        }
        #expect(outputs[0] == outputs[1])
        #expect(outputs[1].contains("qemu:dirty-bitmap:b2"))
    }

    @Test("-l serves the snapshot's data: nbdcopy gives what qemu-nbd -l gives", arguments: ["snap1", "snapshot.name=snap1", "1"])
    func loadedSnapshotContent(_ snapshot: String) throws {
        var copies: [Data] = []
        for qemu in [true, false] {
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/l\(qemu).sock",
                                              arguments: ["-t", "-l", snapshot, "bm.qcow2"], in: dir)
            defer { server.stop() }
            let copy = dir + "/copy-\(qemu).raw"
            try NBDClients.nbdcopy([server.uri, copy])
            copies.append(try Data(contentsOf: URL(fileURLWithPath: copy)))
        }
        #expect(copies[0] == copies[1])
        // The snapshot predates the writes at 2M.
        #expect(copies[1][2 << 20] == 0 && copies[1][1 << 20] == 2)
    }

    @Test("Writes through a writable export dirty its enabled bitmap as under qemu-nbd")
    func writesDirtyTheBitmap() throws {
        var maps: [String] = []
        for qemu in [true, false] {
            let image = dir + "/w\(qemu).qcow2"
            try FileManager.default.copyItem(atPath: dir + "/bm.qcow2", toPath: image)
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/w\(qemu).sock",
                                              arguments: ["-t", "-f", "qcow2", "-B", "b2", "-B", "bdis", image], in: dir)
            defer { server.stop() }
            try QemuOracle.run([try TestTools.qemuIO(), "-f", "raw", "-c", "write -P 7 5M 4k", "-c", "write -z 9M 200k",
                                "-c", "discard 12M 64k", server.uri])
            maps.append(try NBDClients.nbdinfo(["--map=qemu:dirty-bitmap:b2", server.uri])
                        + NBDClients.nbdinfo(["--map=qemu:dirty-bitmap:bdis", server.uri]))
        }
        #expect(maps[0] == maps[1])
        #expect(maps[1].contains("5242880"))
    }

    @Test("Bitmaps and snapshots that cannot be served get qemu-nbd's messages and exit status")
    func errors() throws {
        // A bitmap left in-use by a process killed while it had the image open.
        try FileManager.default.copyItem(atPath: dir + "/bm.qcow2", toPath: dir + "/inuse.qcow2")
        _ = try QemuOracle.run([try TestTools.qemuIO(), "-c", "sigraise 9", dir + "/inuse.qcow2"], check: false)
        try QemuOracle.qemuImg("create", "-q", "-f", "raw", dir + "/r.raw", "1M")
        let programs = try QemuNBDCommandLines(in: dir)
        let sock = dir + "/e.sock"
        let cases: [[String]] = [
            ["-r", "-B", "nope", "bm.qcow2"], ["-B", "b1", "-B", "b2", "-B", "nope", "bm.qcow2"],
            ["-r", "-B", "b1", "inuse.qcow2"], ["-B", "b2", "inuse.qcow2"],
            ["-l", "nosnap", "bm.qcow2"], ["-l", "snapshot.id=7", "bm.qcow2"], ["-l", "snapshot.id=1,snapshot.name=x", "bm.qcow2"],
            ["-l", "snapshot.id=1,snapshot.foo=2", "bm.qcow2"], ["-f", "raw", "-l", "snap1", "r.raw"],
            ["-r", "-f", "raw", "-B", "b1", "r.raw"],
        ]
        for arguments in cases {
            let outcomes = try programs.outcomes(["-k", sock] + arguments, socket: sock)
            #expect(outcomes[0] == outcomes[1], "qemu-nbd \(arguments.joined(separator: " "))")
            #expect(outcomes[0].hasPrefix("status 1\n"))
        }
    }
}

extension NBDBitmapInteropTests {
    @Test("CACHE's copy-up marks no bitmap (a copy-on-read write changes nothing the guest sees), as under qemu-nbd")
    func cacheLeavesTheBitmapClean() throws {
        var maps: [String] = []
        for qemu in [true, false] {
            let base = dir + "/cb\(qemu).qcow2", top = dir + "/ct\(qemu).qcow2"
            try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", base, "4M")
            try QemuOracle.qemuIO(base, ["write -P 1 0 1M"])
            try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
            try QemuOracle.qemuImg("bitmap", "--add", top, "b0")
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/c\(qemu).sock",
                                              arguments: ["-t", "-f", "qcow2", "-B", "b0", top], in: dir)
            defer { server.stop() }
            let reply = try NBDClients.cacheFirst4MiB(server.uri, in: dir)
            maps.append(reply + (try NBDClients.nbdinfo(["--map=qemu:dirty-bitmap:b0", server.uri]))
                        + (try NBDClients.nbdinfo(["--map", server.uri])))
        }
        #expect(maps[0] == maps[1])
        #expect(maps[0].contains("4194304    0  clean"))
    }
}
