// `qcowkit nbd --image-opts` (and json: names, --object beside them) against
// qemu-nbd 7.2 on the same images: what nbdinfo sees of the export, what a
// write through a -s export leaves, and the messages and exit status of
// option strings the block layer refuses. The operand goes through the one
// reader qemu-img's verbs use (ImageArgument, FlatBlockOptions).
import Foundation
import Testing
import TestSupport

@Suite("qcowkit nbd --image-opts = qemu-nbd 7.2", .serialized)
struct NBDImageOptsInteropTests {
    let scratch: ScratchDirectory
    var dir: String { scratch.path }

    init() throws {
        scratch = try ScratchDirectory()
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", dir + "/base.qcow2", "16M")
        try QemuOracle.qemuIO(dir + "/base.qcow2", ["write -P 1 0 1M", "write -z 2M 1M"])
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir + "/top.qcow2")
        try QemuOracle.qemuIO(dir + "/top.qcow2", ["write -P 2 512k 1M"])
        try FileManager.default.createDirectory(atPath: dir + "/psk", withIntermediateDirectories: true)
        try "alice:0123456789abcdef0123456789abcdef\n".write(toFile: dir + "/psk/keys.psk", atomically: true, encoding: .utf8)
    }

    /// nbdinfo's JSON and map of the export served with `arguments`;
    /// `tls` reads it over TLS-PSK as alice.
    private func view(qemu: Bool, _ arguments: [String], tls: Bool = false) throws -> String {
        // The key directory absolute: qemu-nbd reads keys.psk at each
        // handshake, after its chdir("/").
        let server = try NBDServerProcess(qemu: qemu, socket: dir + "/\(qemu ? "q" : "k").sock",
                                          arguments: ["-t"] + arguments.map { $0.replacingOccurrences(of: "PSK", with: dir + "/psk") },
                                          in: dir)
        defer { server.stop() }
        let uri = tls ? "nbds+unix://alice@/?socket=\(server.socket)&tls-psk-file=\(dir)/psk/keys.psk" : server.uri
        var text = try NBDClients.nbdinfo(["--json", uri])
        text += try NBDClients.nbdinfo(["--map", uri])
        return text.replacingOccurrences(of: server.socket, with: "SOCKET")
    }

    @Test("An image given as block options is served as qemu-nbd serves it",
          arguments: [
              (["--image-opts", "driver=qcow2,file.filename=top.qcow2"], false),
              (["--image-opts", "file.filename=top.qcow2"], false),
              (["--image-opts", "driver=qcow2,file.driver=file,file.filename=top.qcow2,backing="], false),
              (["--image-opts", "driver=raw,file.filename=top.qcow2"], false),
              (["-r", "--image-opts", "driver=qcow2,file.filename=top.qcow2,read-only=on,force-share=on"], false),
              (["--image-opts", "driver=qcow2,file.filename=top.qcow2,l2-cache-size=64k,file.locking=off"], false),
              (["--object", "secret,id=s0,data=x", "--image-opts", "driver=qcow2,file.filename=top.qcow2"], false),
              (["json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"top.qcow2\"},\"backing\":null}"], false),
              (["--object", "tls-creds-psk,id=t0,dir=PSK,endpoint=server", "--tls-creds", "t0",
                "--image-opts", "driver=qcow2,file.filename=top.qcow2"], true),
          ])
    func servedAsQemu(_ arguments: [String], _ tls: Bool) throws {
        let ours = try view(qemu: false, arguments, tls: tls)
        let theirs = try view(qemu: true, arguments, tls: tls)
        #expect(ours == theirs)
        #expect(ours.contains("\"export-size\""))
    }

    @Test("-s over block options: writes go to the overlay, which reads through the options' chain")
    func snapshotOverBlockOptions() throws {
        let options = "driver=qcow2,file.filename=top.qcow2,backing="
        let before = try Data(contentsOf: URL(fileURLWithPath: dir + "/top.qcow2"))
        var seen: [String] = []
        for qemu in [true, false] {
            let server = try NBDServerProcess(qemu: qemu, socket: dir + "/s\(qemu).sock",
                                              arguments: ["-t", "-s", "--image-opts", options], in: dir)
            defer { server.stop() }
            let written = try QemuOracle.run(["qemu-io", "-f", "raw", "-c", "write -P 7 64k 64k", server.uri])
            #expect(written.status == 0)
            seen.append(try NBDClients.nbdinfo(["--map", server.uri]))
        }
        #expect(seen[0] == seen[1])
        #expect(seen[0].hasPrefix("         0       65536    3  hole,zero\n"))  // backing= left the base out
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/top.qcow2")) == before)
    }

    @Test("Refused option strings get qemu-nbd's messages and exit status")
    func refusals() throws {
        let programs = try QemuNBDCommandLines(in: dir)
        let sock = dir + "/r.sock"
        let cases: [[String]] = [
            ["--image-opts", "top.qcow2"],
            ["--image-opts", "driver=qcow2,file.filename=top.qcow2,read-only=on"],
            ["--image-opts", "driver=qcow2,file.filename=top.qcow2,force-share=on"],
            ["--image-opts", "driver=qcow2,file.filename=top.qcow2,bogus=1"],
            ["--image-opts", "driver=qcow2,file.filename=top.qcow2,l2-cache-size=1M,cache-size=512k"],
            ["--image-opts", "driver=qcow2,file.filename=top.qcow2,lazy-refcounts=maybe"],
            ["--image-opts", "driver=qcow2,file.driver=file,file.filename=top.qcow2,backing=null"],
            ["--image-opts", "driver=qcow2,file.filename=none.qcow2"],
            ["--image-opts", "driver=bogus,file.filename=top.qcow2"],
            ["--image-opts", "driver=qcow2"],
            ["--image-opts", "-f", "qcow2", "driver=qcow2,file.filename=top.qcow2"],
            ["--object", "secret,id=s0", "--image-opts", "driver=qcow2,file.filename=top.qcow2"],
            ["-l", "nosnap", "--image-opts", "driver=qcow2,file.filename=top.qcow2"],
            ["-B", "b0", "--image-opts", "driver=qcow2,file.filename=top.qcow2"],
            ["json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"top.qcow2\"},\"bogus\":1}"],
        ]
        for arguments in cases {
            let outcomes = try programs.outcomes(["-k", sock] + arguments, socket: sock)
            #expect(outcomes[0] == outcomes[1], "qemu-nbd \(arguments.joined(separator: " "))")
            #expect(outcomes[0].hasPrefix("status 1\n"), "qemu-nbd \(arguments.joined(separator: " "))")
        }
    }
}
