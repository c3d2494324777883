// The block layer's runtime options on -blockdev and blockdev-add (qcow2's
// cache sizes, overlap checks, lazy-refcounts, pass-discard-*, the base's
// discard, cache, detect-zeroes, the file driver's aio and friends) against
// qemu-storage-daemon 7.2: the same acceptance and the same errors, from
// keyval on the command line and from JSON over QMP. They have no other
// effect in QcowKit (see README, Block options); encrypt, data-file and raw's
// offset/size stay refused by name and are not compared here.
import Foundation
import Testing
import TestSupport

@Suite("-blockdev / blockdev-add runtime options against qemu-storage-daemon 7.2")
struct BlockdevRuntimeOptionsInteropTests {
    /// One run of `program` (qemu-storage-daemon or `qcowkit serve`) with
    /// `arguments` and a QMP monitor on stdio fed `requests` then quit: its
    /// exit status, replies (greeting and SHUTDOWN dropped) and standard
    /// error without the program's name.
    private static func run(_ program: [String], _ arguments: [String], requests: [String], in directory: URL) throws -> String {
        let lines = ([#"{"execute":"qmp_capabilities"}"#] + requests + [#"{"execute":"quit"}"#]).joined(separator: "\n") + "\n"
        let quoted = (program + arguments + ["--chardev", "stdio,id=m", "--monitor", "m"])
            .map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        // printf into the pipe: a daemon that refuses its command line never reads it.
        let result = try QemuOracle.run(["sh", "-c", "printf '%s' \"$1\" | " + quoted, "sh", lines], in: directory, check: false)
        // QMP ends lines with "\r\n", one Character in Swift: split on newlines.
        let replies = result.output.split(whereSeparator: \.isNewline).filter { !$0.contains(#""QMP""#) && !$0.contains("SHUTDOWN") }
        let errors = result.errorOutput.replacingOccurrences(of: "qemu-storage-daemon: ", with: "")
            .replacingOccurrences(of: "qcowkit: ", with: "")
        return "exit \(result.status)\n" + replies.joined(separator: "\n") + "\n" + errors
    }

    private static func compare(_ arguments: [String], requests: [String] = []) throws {
        let scratch = try ScratchDirectory()
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", scratch.path + "/disk.qcow2", "1M"])
        let qsd = try TestTools.program("qemu-storage-daemon", package: "qemu-system-common")
        let theirs = try run([qsd], arguments, requests: requests, in: scratch.url)
        let ours = try run([try TestTools.qcowkit(), "serve"], arguments, requests: requests, in: scratch.url)
        #expect(ours == theirs, "\(arguments) \(requests)")
    }

    static let keyval = [
        "l2-cache-size=1M", "l2-cache-size=1048576", "overlap-check=none", "overlap-check=bogus",
        "overlap-check.template=all,overlap-check.main-header=off", "overlap-check.bogus=on",
        "cache-size=1,l2-cache-size=5", "cache-size=100,l2-cache-size=5,refcount-cache-size=5",
        "cache-size=100,refcount-cache-size=500", "lazy-refcounts=on", "pass-discard-request=on,pass-discard-snapshot=off",
        "pass-discard-other=x", "discard=unmap", "discard=on", "detect-zeroes=unmap", "detect-zeroes=unmap,discard=unmap",
        "detect-zeroes=x", "cache.direct=off,cache.no-flush=on", "cache.bogus=1", "auto-read-only=on",
        "cache-clean-interval=x", "l2-cache-entry-size=4096", "file.aio=native", "file.aio=bogus",
        "file.aio=threads,file.aio-max-batch=3,file.drop-cache=off,file.x-check-cache-dropped=off",
    ]

    @Test("on -blockdev (keyval)", arguments: keyval)
    func commandLine(_ option: String) throws {
        try Self.compare(["--blockdev", "driver=qcow2,node-name=n,file.driver=file,file.filename=disk.qcow2," + option])
    }

    static let json = [
        #""overlap-check": {"template": "none", "active-l2": true}, "l2-cache-size": 65536"#,
        #""overlap-check": "cached", "cache": {"direct": false, "no-flush": true}, "discard": "unmap""#,
        #""l2-cache-size": "1M""#, #""overlap-check": 5"#, #""overlap-check": {"bogus": true}"#,
        #""lazy-refcounts": "on""#, #""cache-size": 1, "refcount-cache-size": 2"#, #""detect-zeroes": "unmap""#,
        #""cache": {"direct": "x"}"#, #""cache-clean-interval": 600, "pass-discard-other": false"#,
    ]

    /// cache.no-flush is not only accepted: the node and its file child
    /// report it, and their flushes do nothing (QEMU's BDRV_O_NO_FLUSH).
    @Test("cache.no-flush reaches the node and its file, as query-named-block-nodes shows",
          arguments: ["cache.no-flush=on", "cache.no-flush=off", "file.cache.no-flush=on"])
    func noFlushReported(_ option: String) throws {
        let scratch = try ScratchDirectory()
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", scratch.path + "/disk.qcow2", "1M"])
        let arguments = ["--blockdev", "driver=qcow2,node-name=n,file.driver=file,file.filename=disk.qcow2," + option]
        let query = #"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#
        /// Each node's driver and cache flags (generated node names differ).
        func caches(_ output: String) throws -> [String] {
            let line = try #require(output.split(whereSeparator: \.isNewline).first { $0.contains(#""return": ["#) })
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let nodes = try #require(object["return"] as? [[String: Any]])
            return nodes.map { node in
                let cache = node["cache"] as? [String: Bool] ?? [:]
                return "\(node["drv"] ?? "?"): " + cache.keys.sorted().map { "\($0)=\(cache[$0]!)" }.joined(separator: ",")
            }.sorted()
        }
        let qsd = try TestTools.program("qemu-storage-daemon", package: "qemu-system-common")
        let theirs = try caches(try Self.run([qsd], arguments, requests: [query], in: scratch.url))
        let ours = try caches(try Self.run([try TestTools.qcowkit(), "serve"], arguments, requests: [query], in: scratch.url))
        #expect(theirs.count == 2)
        #expect(ours == theirs)
    }

    @Test("in blockdev-add (JSON)", arguments: json)
    func qmp(_ members: String) throws {
        let add = #"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"n","#
            + #""file":{"driver":"file","filename":"disk.qcow2"},"# + members + "}}"
        try Self.compare([], requests: [add, #"{"execute":"blockdev-del","arguments":{"node-name":"n"}}"#])
    }
}
