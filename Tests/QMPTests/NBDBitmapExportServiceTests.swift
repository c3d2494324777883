// serve's block-export-add `bitmaps` against qemu-storage-daemon 7.2: the
// replies for missing and enabled-on-read-only bitmaps, and what nbdinfo
// sees of exports serving qemu:dirty-bitmap:NAME contexts (a disabled one
// read-only, an enabled one writable, dirtied by a write through it); a
// bitmap one export serves is busy for another, for the bitmap commands and
// inside a transaction (which then undoes the actions before it).
import Foundation
import Testing
import QemuJSON
import TestSupport

@Suite(.serialized) struct NBDBitmapExportServiceTests {
    @Test func bitmapExportsAsQEMU() throws {
        var seen: [ComparedService.Kind: [String]] = [:]
        for kind in ComparedService.Kind.allCases {
            let scratch = try HostileScratch("nbdbitmap-\(kind)")
            let image = scratch.file("bm.qcow2")
            try scratch.run("qemu-img", "create", "-q", "-f", "qcow2", image, "8M")
            try scratch.run("qemu-img", "bitmap", "--add", image, "b1")
            try scratch.run("qemu-img", "bitmap", "--add", image, "b0")
            try scratch.run("qemu-img", "bitmap", "--add", "-g", "128k", "--disable", image, "bdis")
            try scratch.run("qemu-io", "-c", "write -P 1 100k 10k", "-c", "write -P 2 2M 300k", image)
            let socket = scratch.file("nbd.sock")
            let service = try ComparedService(
                kind, blockdevs: ["driver=qcow2,file.driver=file,file.filename=\(image),node-name=n0"],
                extraArguments: ["--nbd-server", "addr.type=unix,addr.path=\(socket)"],
                socketPath: scratch.file("qmp.sock"))
            defer { service.stop() }
            let client = try service.connect()
            var log: [String] = []
            for command in [
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"n0","bitmaps":["nope"]}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"n0","bitmaps":["bdis","b1"]}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"n0","name":"ro","bitmaps":["bdis"]}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"n0","name":"rw","writable":true,"bitmaps":["b1","bdis"]}}"#,
                #"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"n0","name":"rw","writable":true,"bitmaps":["b1"]}}"#,
                #"{"execute":"block-dirty-bitmap-remove","arguments":{"node":"n0","name":"b1"}}"#,
                #"{"execute":"block-dirty-bitmap-clear","arguments":{"node":"n0","name":"bdis"}}"#,
                #"{"execute":"block-dirty-bitmap-enable","arguments":{"node":"n0","name":"bdis"}}"#,
                #"{"execute":"block-dirty-bitmap-merge","arguments":{"node":"n0","target":"b0","bitmaps":["b1"]}}"#,
                #"{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"n0","name":"t"}},{"type":"block-dirty-bitmap-clear","data":{"node":"n0","name":"bdis"}}]}}"#,
                #"{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-clear","data":{"node":"n0","name":"b0"}},{"type":"block-dirty-bitmap-merge","data":{"node":"n0","target":"b0","bitmaps":["b1"]}}]}}"#,
                #"{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"n0","name":"t"}},{"type":"block-dirty-bitmap-remove","data":{"node":"n0","name":"b1"}}]}}"#,
                #"{"execute":"block-dirty-bitmap-add","arguments":{"node":"n0","name":"t"}}"#,
            ] {
                var events: [JSONValue] = []
                log.append("\(try client.execute(command, events: &events))")
            }
            let ro = "nbd+unix:///ro?socket=\(socket)", rw = "nbd+unix:///rw?socket=\(socket)"
            let write = try runClient(["qemu-io", "-f", "raw", "-c", "write -P 3 5M 4k", rw])
            log.append("write exit \(write.status)")
            for run in [try runClient(["nbdinfo", "--json", ro]), try runClient(["nbdinfo", "--json", rw]),
                        try runClient(["nbdinfo", "--map=qemu:dirty-bitmap:bdis", ro]),
                        try runClient(["nbdinfo", "--map=qemu:dirty-bitmap:b1", rw])] {
                log.append("exit \(run.status)\n" + run.output.replacingOccurrences(of: socket, with: "SOCKET"))
            }
            seen[kind] = log
        }
        let qemu = try #require(seen[.qemu]), ours = try #require(seen[.qcowkit])
        #expect(qemu.count == ours.count)
        for (index, (expected, actual)) in zip(qemu, ours).enumerated() {
            #expect(actual == expected, "step \(index)")
        }
        #expect(qemu.last?.contains("dirty") == true)
    }
}
