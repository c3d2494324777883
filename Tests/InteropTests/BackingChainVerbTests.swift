// One backing-chain policy for every verb: info, map, check, convert, io and
// create's backing check follow the same links, stop at the same depth and
// report a loop in the same words, where qemu-img has a behaviour as it does.
// QEMU has no depth limit and hangs on a loop in every verb but info, so
// there only our refusal is checked; qemu-img answers the chains we accept.
import Foundation
import Testing
@testable import Qcow2

@Suite("Backing chains: one policy for every verb")
struct BackingChainVerbTests {
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "qcowkit-chain-verbs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    /// A qcow2 image of 1 MiB named `name`, naming `backing` (not opened).
    func image(_ name: String, backing: String? = nil) throws {
        var options = Qcow2CreateOptions(size: 1 << 20)
        options.backingFile = backing
        options.backingFormat = backing == nil ? nil : "qcow2"
        try Qcow2Creator.create(path: dir + "/" + name, options: options)
    }

    /// Every verb on the chain whose top is `top`; create gets `createBacking`
    /// as its -b (the image one link below `top`, so that the new image's
    /// chain is as deep as `top`'s).
    func runVerbs(top: String, createBacking: String) throws -> [String: HostileRun] {
        let verbs: [String: [String]] = [
            "info": ["info", "--backing-chain", top],
            "map": ["map", top],
            "check": ["check", top],
            "convert": ["convert", "-O", "raw", top, "out.raw"],
            "io": ["io", "-c", "read 0 512", top],
            "create": ["create", "-q", "-f", "qcow2", "-b", createBacking, "-F", "qcow2", "new.qcow2"],
        ]
        return try verbs.mapValues { try HostileProcess.qcowkit($0, in: dir) }
    }

    /// What each opening verb prints when the chain from `top` fails with
    /// `message` (about the whole chain, so not nested).
    static func refusal(_ verb: String, top: String, _ message: String) -> String {
        switch verb {
        case "io": return "qcowkit: can't open device \(top): \(message)\n"
        case "create": return "qcowkit: new.qcow2: \(message)\nCould not open backing image.\n"
        default: return "qcowkit: Could not open '\(top)': \(message)\n"
        }
    }

    @Test("every verb opens the top and exactly the limit's backing files, and refuses one more")
    func depthLimit() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let limit = Qcow2Limits.maxBackingChainDepth
        try image("l0.qcow2")
        for level in 1...(limit + 1) { try image("l\(level).qcow2", backing: "l\(level - 1).qcow2") }

        // The top and `limit` backing files: every verb answers, as qemu-img does.
        let deepest = "l\(limit).qcow2"
        for (verb, run) in try runVerbs(top: deepest, createBacking: "l\(limit - 1).qcow2") {
            #expect(run.status == 0, "\(verb): \(run.stderr)")
        }
        #expect(try HostileProcess.qcowkit(["info", "--backing-chain", deepest], in: dir).stdout
            .components(separatedBy: "image: ").count == limit + 2)
        for verb in [["map", "--output=json", deepest], ["info", "--backing-chain", "--output=json", deepest]] {
            // qemu-img without the hostile-run limits: it is slow on deep chains.
            let theirs = try QemuOracle.run(["qemu-img"] + verb, in: URL(fileURLWithPath: dir))
            let ours = try HostileProcess.qcowkit(verb, in: dir)
            #expect(ours.status == 0, "\(verb): \(ours.stderr)")
            // The files' allocated sizes are the host's to choose.
            let keep = { (text: String) in text.split(separator: "\n").filter { !$0.contains("\"actual-size\"") } }
            let same = keep(ours.stdout) == keep(theirs.output)
            #expect(same, "\(verb): ours and qemu-img's differ")
        }

        // One more: every verb refuses it with the same message.
        try FileManager.default.removeItem(atPath: dir + "/new.qcow2")
        let tooDeep = "l\(limit + 1).qcow2"
        let message = "Backing chain is deeper than \(limit) images"
        for (verb, run) in try runVerbs(top: tooDeep, createBacking: deepest) {
            #expect(run.status == 1, "\(verb)")
            let expected = verb == "info" ? "qcowkit: \(message)\n" : Self.refusal(verb, top: tooDeep, message)
            #expect(run.stderr == expected, "\(verb)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/new.qcow2"))
    }

    @Test("every verb reports a loop at the same file, info in qemu-img info's words")
    func loops() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // a -> b -> a, and a file naming itself through a symlink to it.
        try image("a.qcow2", backing: "b.qcow2")
        try image("b.qcow2", backing: "a.qcow2")
        try image("self.qcow2", backing: "alias.qcow2")
        try FileManager.default.createSymbolicLink(atPath: dir + "/alias.qcow2", withDestinationPath: "self.qcow2")
        for (top, below, looped) in [("a.qcow2", "b.qcow2", "a.qcow2"), ("self.qcow2", "alias.qcow2", "alias.qcow2")] {
            // create -b `below`: the new image's chain is `below` -> ... -> `below` again.
            let again = top == "a.qcow2" ? below : looped
            for (verb, run) in try runVerbs(top: top, createBacking: below) {
                #expect(run.status == 1, "\(verb) on \(top)")
                let expected = verb == "info"
                    ? "qcowkit: Backing file '\(looped)' creates an infinite loop.\n"
                    : Self.refusal(verb, top: top, "Backing chain loops back to '\(verb == "create" ? again : looped)'")
                #expect(run.stderr == expected, "\(verb) on \(top)")
            }
        }
        // qemu-img info has its own loop check (the other verbs hang): the same words.
        let ours = try HostileProcess.qcowkit(["info", "--backing-chain", "a.qcow2"], in: dir)
        let theirs = try HostileProcess.qemuImg(["info", "--backing-chain", "a.qcow2"], in: dir)
        #expect(theirs.status == 1 && ours.status == 1)
        #expect(ours.stderr == theirs.stderr.replacingOccurrences(of: "qemu-img: ", with: "qcowkit: "))
    }

    @Test("a backing file that cannot be opened fails every verb in qemu-img's words")
    func unusableBacking() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/dir", withIntermediateDirectories: true)
        try image("ondir.qcow2", backing: "dir")
        try image("gone.qcow2", backing: "missing.qcow2")
        try image("mid.qcow2", backing: "gone.qcow2")
        for top in ["ondir.qcow2", "gone.qcow2", "mid.qcow2", "dir"] {
            for verb in [["map", top], ["check", top], ["convert", "-O", "raw", top, "out.raw"],
                         ["info", "--backing-chain", top],
                         ["create", "-q", "-f", "qcow2", "-b", top, "-F", "qcow2", "new.qcow2"]] {
                let ours = try HostileProcess.qcowkit(verb, in: dir), theirs = try HostileProcess.qemuImg(verb, in: dir)
                #expect(ours.status == theirs.status, "\(verb)")
                #expect(ours.stderr == theirs.stderr.replacingOccurrences(of: "qemu-img: ", with: "qcowkit: "), "\(verb)")
            }
            let ours = try HostileProcess.qcowkit(["io", "-c", "read 0 512", top], in: dir)
            let theirs = try HostileProcess.run(["qemu-io", "-c", "read 0 512", top], in: dir)
            #expect(ours.stderr == theirs.stderr.replacingOccurrences(of: "qemu-io: ", with: "qcowkit: "), "io \(top)")
        }
    }

    @Test("a backing name QEMU would hand to a protocol driver is refused by every verb")
    func protocolNames() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try image("base.qcow2")
        try FileManager.default.createSymbolicLink(atPath: dir + "/x_y:base.qcow2", withDestinationPath: "base.qcow2")
        for name in ["x_y:base.qcow2", "json:{\"driver\":\"file\",\"filename\":\"base.qcow2\"}"] {
            try? FileManager.default.removeItem(atPath: dir + "/top.qcow2")
            try image("top.qcow2", backing: name)
            let message = "Could not open backing file: "
                + Qcow2Error.pseudoProtocolBackingRefused(name).description
            for (verb, run) in try runVerbs(top: "top.qcow2", createBacking: "top.qcow2") {
                #expect(run.status == 1, "\(verb) on \(name)")
                let expected = verb == "info"
                    ? "qcowkit: Could not open '\(name)': \(Qcow2Error.pseudoProtocolBackingRefused(name))\n"
                    : Self.refusal(verb, top: "top.qcow2", message)
                #expect(run.stderr == expected, "\(verb) on \(name)")
            }
        }
        // QEMU has no driver for the first: it fails too.
        try? FileManager.default.removeItem(atPath: dir + "/top.qcow2")
        try image("top.qcow2", backing: "x_y:base.qcow2")
        #expect(try HostileProcess.qemuImg(["map", "top.qcow2"], in: dir).stderr
            == "qemu-img: Could not open 'top.qcow2': Could not open backing file: Unknown protocol 'x_y'\n")
    }
}
