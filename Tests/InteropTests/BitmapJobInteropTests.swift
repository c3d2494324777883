// Bitmaps through block-commit and block-stream in `qcowkit serve`, against
// qemu-storage-daemon 7.2 on copies of one chain base <- mid <- top, each
// image with a persistent bitmap and data of its own: an active commit
// (top and mid into base, a bitmap added to top while the job is ready), a
// commit of mid into base under top, and a stream of mid and base into top.
// QEMU 7.2 moves no bitmap between nodes: base's bitmaps record the ranges
// a commit writes into base, the committed nodes keep theirs (stored in
// their own files when closed), a stream's copy-on-read writes mark none of
// top's, and query-named-block-nodes lists every node's bitmaps, read-only
// ones included. Compared: every reply and the listing after the job, and
// after quit top and mid byte for byte, base by guest content, `qemu-img
// info` bitmaps and each bitmap's bits (qemu-nbd -B, nbdinfo): the active
// job's mirror writes base's chunks in an order that varies from run to
// run, so base's cluster layout does. Then `qcowkit commit` against
// `qemu-img commit`.
import Foundation
import Testing
import TestSupport

@Suite("bitmaps through commit and stream against QEMU 7.2")
struct BitmapJobInteropTests {
    /// Drives one service over stdio: waits for the job's events, prints
    /// each reply and the listing with node names and directories masked.
    static let driver = #"""
import json, subprocess, sys
mode, d = sys.argv[1], sys.argv[2]
p = subprocess.Popen(sys.argv[3:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
events = []
def read():
    return json.loads(p.stdout.readline())
def execute(command, arguments=None, show=True):
    message = {"execute": command}
    if arguments is not None:
        message["arguments"] = arguments
    p.stdin.write(json.dumps(message) + "\n")
    p.stdin.flush()
    while True:
        r = read()
        if "event" in r:
            events.append(r["event"])
            continue
        if show:
            print(json.dumps(r).replace(d, "D"))
        return r
def wait(name):
    while name not in events:
        r = read()
        if "event" in r:
            events.append(r["event"])
            if r["event"] == "BLOCK_JOB_COMPLETED":
                print("completed", r["data"].get("error"))
    events.remove(name)
read()
execute("qmp_capabilities")
execute("blockdev-add", {"driver": "qcow2", "node-name": "top", "file": {"driver": "file", "filename": d + "/top.qcow2"}})
if mode == "active":
    execute("block-commit", {"job-id": "j", "device": "top"})
    wait("BLOCK_JOB_READY")
    execute("block-dirty-bitmap-add", {"node": "top", "name": "during", "persistent": True})
    execute("job-complete", {"id": "j"})
elif mode == "stream":
    execute("block-stream", {"job-id": "j", "device": "top"})
else:
    execute("block-commit", {"job-id": "j", "device": "top", "top": d + "/mid.qcow2", "base": d + "/base.qcow2"})
wait("BLOCK_JOB_COMPLETED")
r = execute("query-named-block-nodes", {"flat": True}, show=False)
for n in r["return"]:
    name = "#" if n["node-name"].startswith("#") else n["node-name"]
    print(name, n["file"].replace(d, "D"), n.get("backing_file", "").replace(d, "D"), n["backing_file_depth"],
          n["ro"], json.dumps(n.get("dirty-bitmaps")))
execute("quit")
p.wait()
"""#

    /// The chain, by qemu-img and qemu-io, in `dir`.
    static func makeChain(_ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func img(_ name: String) -> String { dir + "/" + name + ".qcow2" }
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", img("base"), "8M"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", img("base"), "bb"])
        try QemuOracle.run(["qemu-io", "-c", "write -P 1 0 64k", img("base")])
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", img("mid")])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", "-g", "4096", img("mid"), "mb"])
        try QemuOracle.run(["qemu-io", "-c", "write -P 2 2M 64k", img("mid")])
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", img("top")])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", "-g", "512", img("top"), "tb"])
        try QemuOracle.run(["qemu-io", "-c", "write -P 3 1M 64k", "-c", "write -P 4 5M 4k", img("top")])
    }

    @Test("after the job and after quit", arguments: ["active", "intermediate", "stream"])
    func commit(_ mode: String) throws {
        let root = NSTemporaryDirectory() + "qcowkit-bitmap-commit-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Names of one length: the committed overlay's header names base's path.
        let theirs = root + "/q", ours = root + "/k"
        try Self.makeChain(theirs)
        try Self.makeChain(ours)
        let script = root + "/driver.py"
        try Self.driver.write(toFile: script, atomically: true, encoding: .utf8)
        func drive(_ dir: String, _ service: [String]) throws -> String {
            let (executable, arguments) = try TestTools.resolve(service)
            let result = try QemuOracle.run(["/usr/bin/python3", script, mode, dir, executable] + arguments, check: false)
            #expect(result.status == 0, "\(service[0]): \(result.errorOutput)")
            return result.output
        }
        let expected = try drive(theirs, ["qemu-storage-daemon", "--chardev", "stdio,id=m", "--monitor", "chardev=m"])
        let actual = try drive(ours, ["qcowkit", "serve", "-qmp", "stdio"])
        #expect(expected.contains("completed None"))
        #expect(actual == expected)

        for name in ["top", "mid"] {
            // The overlay's header names base by its path: ours for theirs.
            var reference = try Data(contentsOf: URL(fileURLWithPath: "\(theirs)/\(name).qcow2"))
            while let range = reference.range(of: Data(theirs.utf8)) {
                reference.replaceSubrange(range, with: Data(ours.utf8))
            }
            let same = try Data(contentsOf: URL(fileURLWithPath: "\(ours)/\(name).qcow2")) == reference
            #expect(same, "\(name) differs")
        }
        let base = (theirs + "/base.qcow2", ours + "/base.qcow2")
        try QemuOracle.run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", base.0, base.1])
        let info = try QemuOracle.run(["qemu-img", "info", "--output=json", base.0]).output
        #expect(try BitmapOracle.formatSpecific(info)
                == BitmapOracle.formatSpecific(QemuOracle.run(["qemu-img", "info", "--output=json", base.1]).output))
        let check = try QemuOracle.run(["qemu-img", "check", base.1], check: false)
        #expect(check.status == 0, "\(check.output)")
        for bitmap in try BitmapOracle.consistentBitmaps(info) {
            #expect(try BitmapOracle.dirtyMap(base.1, bitmap) == BitmapOracle.dirtyMap(base.0, bitmap), "\(bitmap)")
        }
    }

    /// `qcowkit commit` against `qemu-img commit` on top (into mid, then
    /// emptied): mid's bitmaps record what the commit wrote, base's nothing,
    /// top keeps its bitmaps with the same bits and the emptied top is
    /// byte-identical (its bitmaps stored once, after the emptying, as by
    /// qemu-img's single open). mid is compared by its map without host
    /// offsets, its bitmaps and their bits: the job's two chunks land in an
    /// order that varies from run to run.
    @Test("qcowkit commit: the bitmaps of every image after the commit")
    func offlineCommit() throws {
        let root = NSTemporaryDirectory() + "qcowkit-bitmap-commit-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let theirs = root + "/q", ours = root + "/k"
        try Self.makeChain(theirs)
        try Self.makeChain(ours)
        try QemuOracle.run(["qemu-img", "commit", "-q", theirs + "/top.qcow2"])
        try QemuOracle.run(["qcowkit", "commit", "-q", ours + "/top.qcow2"])
        for name in ["base", "mid", "top"] {
            let (reference, mine) = (theirs + "/\(name).qcow2", ours + "/\(name).qcow2")
            let info = try QemuOracle.run(["qemu-img", "info", "--output=json", reference]).output
            #expect(try BitmapOracle.formatSpecific(info)
                    == BitmapOracle.formatSpecific(QemuOracle.run(["qemu-img", "info", "--output=json", mine]).output))
            let check = try QemuOracle.run(["qemu-img", "check", mine], check: false)
            #expect(check.status == 0, "\(name): \(check.output)")
            for bitmap in try BitmapOracle.consistentBitmaps(info) {
                #expect(try BitmapOracle.dirtyMap(mine, bitmap) == BitmapOracle.dirtyMap(reference, bitmap),
                        "\(name) \(bitmap)")
            }
            // Without host offsets: the job's chunks land in an order that varies.
            func map(_ path: String) throws -> String {
                try QemuOracle.run(["qemu-img", "map", "--output=json", "-f", "qcow2", path]).output
                    .replacingOccurrences(of: #", "offset": [0-9]+"#, with: "", options: .regularExpression)
            }
            #expect(try map(mine).replacingOccurrences(of: ours, with: theirs) == map(reference), "\(name) map")
        }
        let top = try Data(contentsOf: URL(fileURLWithPath: ours + "/top.qcow2"))
            == Data(contentsOf: URL(fileURLWithPath: theirs + "/top.qcow2"))
        #expect(top, "top differs")
    }
}
