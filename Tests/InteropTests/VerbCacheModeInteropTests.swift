// The cache modes of the image-changing verbs (-t, and --image-opts'
// cache.no-flush) against qemu-img 7.2 where they change what happens
// rather than what is left: how often the files are synced (counted with
// strace). unsafe (BDRV_O_NO_FLUSH) never syncs any file of the chain;
// writethrough and directsync complete each of a safe rebase's writes with
// a flush, so they sync more often than writeback. The images must still
// come out as qemu-img's: byte for byte, or (commit's base, whose cluster
// placement varies in QEMU from run to run) by guest content.
import Foundation
import Testing
import TestSupport

@Suite("Image verbs' cache modes: syncs against qemu-img 7.2")
struct VerbCacheModeInteropTests {
    /// base (16M) <- img (4 KiB clusters), and an unrelated `new`.
    static let setup: [[String]] = [
        ImageVerbSetup.qcow2("base", "16M"), ImageVerbSetup.io("base", "write -P 1 0 8M"),
        ImageVerbSetup.qcow2("img", "16M", "cluster_size=4k", backing: "base"),
        ImageVerbSetup.io("img", "write -P 2 1M 3M", "write -z 12M 64k"),
        ImageVerbSetup.qcow2("new", "16M"), ImageVerbSetup.io("new", "write -P 1 0 5M"),
    ]

    struct Run {
        var syncs: Int
        var status: Int32
        var directory: String
    }

    /// `tool arguments` in a fresh copy of the setup, under strace: how
    /// many fsync/fdatasync calls it made.
    static func run(_ tool: String, _ arguments: [String], template: String) throws -> Run {
        let directory = template + "-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: template, toPath: directory)
        let trace = directory + ".trace"
        let strace = try TestTools.program("strace", package: "strace")
        let result = try QemuOracle.run([strace, "-f", "-qq", "-e", "trace=fsync,fdatasync,sync_file_range,syncfs",
                                         "-o", trace, tool] + arguments,
                                        in: URL(fileURLWithPath: directory), check: false)
        let lines = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n")
        return Run(syncs: lines.filter { $0.contains("sync") && !$0.contains("= -1") }.count, status: result.status,
                   directory: directory)
    }

    static func template() throws -> String {
        let root = NSTemporaryDirectory() + "qcowkit-cache-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        for command in setup { try QemuOracle.run(command, in: URL(fileURLWithPath: root)) }
        return root
    }

    static func cleanUp(_ template: String) {
        let parent = (template as NSString).deletingLastPathComponent
        let name = (template as NSString).lastPathComponent
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where entry.hasPrefix(name) {
            try? FileManager.default.removeItem(atPath: parent + "/" + entry)
        }
    }

    /// The files of the two runs agree: `contentOnly` by guest content.
    static func expectSameImages(_ theirs: Run, _ mine: Run, contentOnly: Set<String> = [], _ context: Comment) throws {
        for name in ["base", "img", "new"] {
            if contentOnly.contains(name) {
                let compare = try QemuOracle.run(["qemu-img", "compare", "-U", theirs.directory + "/" + name,
                                                  mine.directory + "/" + name], check: false)
                #expect(compare.status == 0, "\(context): \(name): \(compare.output)")
            } else {
                #expect(FileManager.default.contents(atPath: theirs.directory + "/" + name)
                        == FileManager.default.contents(atPath: mine.directory + "/" + name), "\(context): \(name)")
            }
        }
    }

    @Test("-t unsafe and cache.no-flush=on: no file is ever synced, as with qemu-img; the same images")
    func unsafeNeverSyncs() throws {
        let template = try Self.template()
        defer { Self.cleanUp(template) }
        let qcowkit = try TestTools.qcowkit()
        let cases: [(arguments: [String], contentOnly: Set<String>)] = [
            (["amend", "-t", "unsafe", "-o", "refcount_bits=8", "img"], []),
            (["rebase", "-t", "unsafe", "-b", "new", "-F", "qcow2", "img"], []),
            (["rebase", "-t", "unsafe", "-b", "", "img"], []),
            (["commit", "-t", "unsafe", "img"], ["base"]),
            (["commit", "--image-opts", "driver=qcow2,file.filename=img,cache.no-flush=on"], ["base"]),
        ]
        for (arguments, contentOnly) in cases {
            let context = Comment(rawValue: arguments.joined(separator: " "))
            let theirs = try Self.run("qemu-img", arguments, template: template)
            let mine = try Self.run(qcowkit, arguments, template: template)
            #expect(theirs.status == 0 && mine.status == 0, context)
            #expect(theirs.syncs == 0, context)
            #expect(mine.syncs == 0, context)
            try Self.expectSameImages(theirs, mine, contentOnly: contentOnly, context)
        }
        // The count is real: the default mode syncs.
        #expect(try Self.run(qcowkit, ["amend", "-o", "refcount_bits=8", "img"], template: template).syncs > 0)
    }

    @Test("-t writethrough and directsync: a safe rebase flushes after each write (more syncs than writeback)")
    func writethroughRebaseFlushesEachWrite() throws {
        let template = try Self.template()
        defer { Self.cleanUp(template) }
        let qcowkit = try TestTools.qcowkit()
        let rebase = ["rebase", "-b", "new", "-F", "qcow2", "img"]
        let theirsWriteback = try Self.run("qemu-img", ["-t", "writeback"].prefixed(by: rebase), template: template)
        let mineWriteback = try Self.run(qcowkit, ["-t", "writeback"].prefixed(by: rebase), template: template)
        for mode in ["writethrough", "directsync"] {
            let theirs = try Self.run("qemu-img", ["-t", mode].prefixed(by: rebase), template: template)
            let mine = try Self.run(qcowkit, ["-t", mode].prefixed(by: rebase), template: template)
            #expect(theirs.syncs > theirsWriteback.syncs, "qemu-img -t \(mode)")
            #expect(mine.syncs > mineWriteback.syncs, "qcowkit -t \(mode): \(mine.syncs) syncs, writeback \(mineWriteback.syncs)")
            try Self.expectSameImages(theirs, mine, Comment(rawValue: mode))
        }
    }
}

private extension Array where Element == String {
    /// `command`'s verb, then these options, then the rest of `command`.
    func prefixed(by command: [String]) -> [String] { [command[0]] + self + command.dropFirst() }
}
