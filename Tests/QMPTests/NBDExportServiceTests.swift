// qcowkit serve's NBD server and block exports against qemu-storage-daemon
// 7.2 on the same command sequences: QMP replies and BLOCK_EXPORT_DELETED
// events (nbd-server-start/-stop, block-export-add/-del,
// query-block-exports, object-add/-del), and what NBD clients we did not
// write (nbdinfo, qemu-io over TLS) see of an export set up with
// --object/--nbd-server/--export, and the image they leave.
import Foundation
import Testing
import QemuJSON
import TestSupport

@Suite(.serialized) struct NBDExportServiceTests {
    /// A reply with the events that came before it, timestamps left out.
    private func transcript(_ client: UnixClient, _ command: String) throws -> [String] {
        var events: [JSONValue] = []
        let reply = try client.execute(command, events: &events)
        return events.map { event in
            guard case let .object(members) = event else { return "\(event)" }
            return "\(JSONValue.object(members.filter { $0.0 != "timestamp" }))"
        } + ["\(reply)"]
    }

    private func prepare(_ scratch: HostileScratch) throws {
        try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", scratch.file("base.qcow2"), "4M")
        try scratch.run("qemu-io", "-c", "write -P 0x11 0 1M", "-c", "write -z 2M 64k", scratch.file("base.qcow2"))
        try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", scratch.file("top.qcow2"))
        try scratch.run("qemu-io", "-c", "write -P 0x22 512k 1M", scratch.file("top.qcow2"))
        try scratch.run("qemu-img", "create", "-q", "-f", "raw", scratch.file("ro.raw"), "1M")
    }

    private func blockdevs(_ scratch: HostileScratch) -> [String] {
        ["driver=file,filename=\(scratch.file("ro.raw")),node-name=f0,read-only=on",
         "driver=qcow2,file.driver=file,file.filename=\(scratch.file("top.qcow2")),node-name=n0"]
    }

    @Test func commandSequenceAsQEMU() throws {
        let credentials = try TLSFixtures.get()
        var transcripts: [ComparedService.Kind: [[String]]] = [:]
        for kind in ComparedService.Kind.allCases {
            let scratch = try HostileScratch("nbdexport-\(kind)")
            try prepare(scratch)
            let service = try ComparedService(kind, blockdevs: blockdevs(scratch), socketPath: scratch.file("qmp.sock"))
            defer { service.stop() }
            let client = try service.connect()
            let socket = scratch.file("nbd.sock")
            func addr(_ path: String) -> String { #"{"type":"unix","data":{"path":"\#(path)"}}"# }
            let commands = [
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"n0"}}"#,
                #"{"execute":"nbd-server-start","arguments":{"addr":\#(addr(socket)),"max-connections":-1}}"#,
                #"{"execute":"nbd-server-start","arguments":{"addr":\#(addr("/nonexistent/nbd.sock"))}}"#,
                #"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix"}}}"#,
                #"{"execute":"nbd-server-start","arguments":{"addr":\#(addr(socket)),"tls-creds":"nope"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"tls-creds-x509","id":"c0","dir":"\#(credentials.clientDir)"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"tls-creds-x509","id":"c0","dir":"\#(credentials.clientDir)"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"tls-creds-x509","id":"t1","dir":"/nonexistent","endpoint":"server"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"tls-creds-psk","id":"t1","dir":"\#(credentials.pskDir)","endpoint":"server","verify-peer":"on"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"tls-creds-psk","id":"t1","dir":"\#(credentials.pskDir)","endpoint":"server"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"secret","id":"s0","data":"x"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"secret","id":"s0","data":"x"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"secret","id":"s1"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"secret","id":"s1","data":"x","format":"bad"}}"#,
                #"{"execute":"object-add","arguments":{"qom-type":"secret","id":"s1","data":"x","bogus":1}}"#,
                #"{"execute":"nbd-server-start","arguments":{"addr":\#(addr(socket)),"tls-creds":"s0"}}"#,
                #"{"execute":"object-del","arguments":{"id":"s0"}}"#,
                #"{"execute":"nbd-server-start","arguments":{"addr":\#(addr(socket)),"tls-creds":"c0"}}"#,
                #"{"execute":"object-del","arguments":{"id":"c0"}}"#,
                #"{"execute":"object-del","arguments":{"id":"c0"}}"#,
                #"{"execute":"nbd-server-start","arguments":{"addr":\#(addr(socket)),"tls-creds":"t1"}}"#,
                #"{"execute":"nbd-server-start","arguments":{"addr":\#(addr(socket))}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"nope"}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"n0","bitmaps":["b"]}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"n0","writable":true}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"n0"}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"n0"}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"n0","name":"other","description":"d","allocation-depth":true}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e2","node-name":"f0","name":"ro","writable":true}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e3","node-name":"f0","name":"ro"}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e4","node-name":"f0","writable":"yes"}}"#,
                #"{"execute":"block-export-add","arguments":{"id":"e4","node-name":"f0"}}"#,
                #"{"execute":"blockdev-del","arguments":{"node-name":"n0"}}"#,
                #"{"execute":"query-block-exports"}"#,
                #"{"execute":"block-export-del","arguments":{"id":"nope"}}"#,
                #"{"execute":"block-export-del","arguments":{"id":"e1","mode":"hard"}}"#,
                #"{"execute":"block-export-del","arguments":{"id":"e1"}}"#,
                #"{"execute":"block-export-del","arguments":{"id":"e3","mode":"soft"}}"#,
                #"{"execute":"query-block-exports"}"#,
                #"{"execute":"nbd-server-stop"}"#,
                #"{"execute":"query-block-exports"}"#,
                #"{"execute":"nbd-server-stop"}"#,
                #"{"execute":"blockdev-del","arguments":{"node-name":"n0"}}"#,
            ]
            transcripts[kind] = try commands.map { try transcript(client, $0) }
        }
        let qemu = try #require(transcripts[.qemu]), ours = try #require(transcripts[.qcowkit])
        #expect(qemu.count == ours.count)
        for (index, (expected, actual)) in zip(qemu, ours).enumerated() {
            #expect(actual == expected, "command \(index)")
        }
    }

    /// --object, --nbd-server and --export on the command line; clients over
    /// PSK see the same sizes and maps, a plain client is refused, and a
    /// write through the export leaves the same guest content.
    @Test func commandLineExportAsQEMU() throws {
        let credentials = try TLSFixtures.get()
        var seen: [ComparedService.Kind: [ClientRun]] = [:]
        var tops: [ComparedService.Kind: String] = [:]
        for kind in ComparedService.Kind.allCases {
            let scratch = try HostileScratch("nbdcmdline-\(kind)")
            try prepare(scratch)
            let socket = scratch.file("nbd.sock")
            let service = try ComparedService(
                kind, blockdevs: blockdevs(scratch),
                extraArguments: ["--object", "tls-creds-psk,id=tls0,dir=\(credentials.pskDir),endpoint=server",
                                 "--nbd-server", "addr.type=unix,addr.path=\(socket),tls-creds=tls0",
                                 "--export", "nbd,id=e0,node-name=n0,name=exp,writable=on,allocation-depth=on"],
                socketPath: scratch.file("qmp.sock"))
            defer { service.stop() }
            _ = try service.connect()
            let uri = "nbds+unix://alice@/exp?socket=\(socket)&tls-psk-file=\(credentials.pskDir)/keys.psk"
            var runs = [
                try runClient(["nbdinfo", "--size", uri]),
                try runClient(["nbdinfo", "--json", uri]),
                try runClient(["nbdinfo", "--map", uri]),
                try runClient(["nbdinfo", "--map=qemu:allocation-depth", uri]),
                ClientRun(status: try runClient(["nbdinfo", "--size", "nbd+unix:///exp?socket=\(socket)"]).status, output: ""),
            ]
            let written = try runClient([
                "qemu-io", "--object", "tls-creds-psk,id=tls0,dir=\(credentials.pskDir),endpoint=client,username=alice",
                "--image-opts", "driver=nbd,path=\(socket),export=exp,tls-creds=tls0",
                "-c", "write -P 0x44 1536k 128k", "-c", "write -z 3M 64k", "-c", "flush"])
            // Its timing lines aside.
            runs.append(ClientRun(status: written.status,
                                  output: written.output.split(separator: "\n").filter { !$0.contains("ops/sec") }.joined(separator: "\n")))
            runs.append(try runClient(["nbdinfo", "--map", uri]))
            seen[kind] = runs.map { ClientRun(status: $0.status, output: $0.output.replacingOccurrences(of: scratch.path, with: "DIR")) }
            service.stop()
            let copy = NSTemporaryDirectory() + "qcowkit-nbdexport-\(kind)-\(getpid()).raw"
            try? FileManager.default.removeItem(atPath: copy)
            try scratch.run("qemu-img", "convert", "-O", "raw", scratch.file("top.qcow2"), copy)
            tops[kind] = copy
        }
        let qemu = try #require(seen[.qemu]), ours = try #require(seen[.qcowkit])
        #expect(qemu.first == ClientRun(status: 0, output: "4194304\n"))
        #expect(qemu[4].status != 0)
        for (index, (expected, actual)) in zip(qemu, ours).enumerated() {
            #expect(actual == expected, "client \(index)")
        }
        let compared = try runClient(["qemu-img", "compare", "-f", "raw", "-F", "raw", tops[.qemu]!, tops[.qcowkit]!])
        #expect(compared == ClientRun(status: 0, output: "Images are identical.\n"))
        for path in tops.values { try? FileManager.default.removeItem(atPath: path) }
    }

    /// A writable export on the top of an active commit: writes through it
    /// while the job runs reach the base (mirrored), and once the job
    /// completes the export serves the base, as in QEMU.
    @Test func exportDuringActiveCommitAsQEMU() throws {
        var seen: [ComparedService.Kind: [String]] = [:]
        var bases: [ComparedService.Kind: String] = [:]
        for kind in ComparedService.Kind.allCases {
            let scratch = try HostileScratch("nbdcommit-\(kind)")
            try prepare(scratch)
            let socket = scratch.file("nbd.sock")
            let service = try ComparedService(
                kind,
                blockdevs: ["driver=qcow2,file.driver=file,file.filename=\(scratch.file("base.qcow2")),node-name=b0",
                            "driver=qcow2,file.driver=file,file.filename=\(scratch.file("top.qcow2")),node-name=n0,backing=b0"],
                extraArguments: ["--nbd-server", "addr.type=unix,addr.path=\(socket)",
                                 "--export", "nbd,id=e0,node-name=n0,name=exp,writable=on"],
                socketPath: scratch.file("qmp.sock"))
            defer { service.stop() }
            let client = try service.connect()
            var log: [String] = []
            func until(_ event: String) throws {
                while true {
                    let message = try client.next()
                    if message["event"] == .string(event) { return }
                }
            }
            func io(_ commands: String...) throws {
                let run = try runClient(["qemu-io", "-f", "raw", "nbd+unix:///exp?socket=\(socket)"] + commands.flatMap { ["-c", $0] })
                log.append("exit \(run.status): " + run.output.split(separator: "\n").filter { !$0.contains("ops/sec") }.joined(separator: "\n"))
            }
            log.append("\(try client.execute(#"{"execute":"block-commit","arguments":{"device":"n0","job-id":"j"}}"#))")
            try until("BLOCK_JOB_READY")
            try io("write -P 0x55 256k 64k", "read -P 0x22 512k 64k")
            log.append("\(try client.execute(#"{"execute":"block-job-complete","arguments":{"device":"j"}}"#))")
            try until("BLOCK_JOB_COMPLETED")
            log.append("\(try client.execute(#"{"execute":"query-block-exports"}"#))")
            try io("read -P 0x55 256k 64k", "write -P 0x66 768k 64k")
            service.stop()
            let copy = NSTemporaryDirectory() + "qcowkit-nbdcommit-\(kind)-\(getpid()).raw"
            try? FileManager.default.removeItem(atPath: copy)
            try scratch.run("qemu-img", "convert", "-O", "raw", scratch.file("base.qcow2"), copy)
            try scratch.run("qemu-io", "-f", "raw", "-c", "read -P 0x55 256k 64k", "-c", "read -P 0x66 768k 64k", copy)
            seen[kind] = log
            bases[kind] = copy
        }
        #expect(seen[.qcowkit] == seen[.qemu])
        let compared = try runClient(["qemu-img", "compare", "-f", "raw", "-F", "raw", bases[.qemu]!, bases[.qcowkit]!])
        #expect(compared == ClientRun(status: 0, output: "Images are identical.\n"))
        for path in bases.values { try? FileManager.default.removeItem(atPath: path) }
    }
}

extension NBDExportServiceTests {
    /// NBD_CMD_CACHE through an export of a node with a backing file copies
    /// up into the node as qemu-storage-daemon 7.2's copy-on-read does,
    /// read-only export or not (the node itself is writable): the same
    /// replies and the same image left behind.
    @Test(arguments: ["on", "off"]) func cacheCopiesUpAsQEMU(_ writable: String) throws {
        let script = """
            import nbd, sys
            h = nbd.NBD()
            h.connect_uri(sys.argv[1])
            for offset, length in [(2097152, 65536), (3145728, 65536), (0, 4096), (1040384, 16384), (0, 4194304)]:
                try:
                    h.cache(length, offset)
                    print(offset, length, "ok")
                except nbd.Error as e:
                    print(offset, length, "error", e.errnum)
            h.shutdown()
            """
        var seen: [ComparedService.Kind: [String]] = [:]
        for kind in ComparedService.Kind.allCases {
            let scratch = try HostileScratch("nbdcache-\(kind)")
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", scratch.file("b.qcow2"), "4M")
            try scratch.run("qemu-io", "-c", "write -P 1 0 1M", scratch.file("b.qcow2"))
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", scratch.file("t.qcow2"))
            try scratch.run("qemu-io", "-c", "write -P 2 2M 64k", scratch.file("t.qcow2"))
            let socket = scratch.file("nbd.sock")
            let service = try ComparedService(
                kind, blockdevs: ["driver=qcow2,file.driver=file,file.filename=\(scratch.file("t.qcow2")),node-name=n0"],
                extraArguments: ["--nbd-server", "addr.type=unix,addr.path=\(socket)",
                                 "--export", "nbd,id=e0,node-name=n0,writable=\(writable)"],
                socketPath: scratch.file("qmp.sock"))
            let client = try service.connect()
            let replies = try runClient(["/usr/bin/python3", "-c", script, "nbd+unix:///n0?socket=\(socket)"])
            // quit, so QEMU writes its metadata back (stop kills it).
            _ = try? client.execute(#"{"execute":"quit"}"#)
            service.stop()
            let map = try runClient(["qemu-img", "map", "--output=json", scratch.file("t.qcow2")])
            seen[kind] = [replies.description, map.description]
        }
        #expect(seen[.qcowkit] == seen[.qemu])
        #expect(seen[.qemu]?.first == "exit 0: 2097152 65536 ok\n3145728 65536 ok\n0 4096 ok\n1040384 16384 ok\n0 4194304 ok\n")
        #expect(seen[.qemu]?.last?.contains(#"{ "start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true"#) == true)
    }
}
