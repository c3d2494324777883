// The `map` and `convert` verbs end to end through the built binary, and the
// backing-chain errors QEMU either reports (missing backing) or hangs on
// (loops), which we refuse with clear messages.
import Foundation
import Testing
@testable import Qcow2

@Suite("map and convert CLI against qemu-img")
struct ReadInteropCLITests {
    /// qemu-img's stderr with our program name.
    private func renamed(_ text: String) -> String {
        text.replacingOccurrences(of: "qemu-img: ", with: "qcowkit: ")
    }

    private func chain(_ dir: ScratchDirectory) throws -> String {
        try #require(ReadFixtures.all.first { $0.name == "3-deep chain" }).make(dir)
    }

    @Test("map prints what qemu-img map prints, for a chain, with relative paths")
    func mapThroughBinary() throws {
        let dir = try ScratchDirectory()
        _ = try chain(dir)
        for arguments in [["map", "--output=json", "top.qcow2"], ["map", "--output", "human", "-U", "top.qcow2"],
                          ["map", "-f", "qcow2", "mid.qcow2"], ["map", "--output=json", "-f", "raw", "base.qcow2"]] {
            let ours = try QemuOracle.qcowkit(arguments[0], in: dir.url, arguments: Array(arguments.dropFirst()))
            let theirs = try QemuOracle.run(["qemu-img"] + arguments, in: dir.url, check: false)
            #expect(ours.output == theirs.output, "\(arguments)")
            #expect(ours.status == theirs.status)
        }
    }

    @Test("convert -O raw writes qemu-img's bytes; unknown output formats are refused")
    func convertThroughBinary() throws {
        let dir = try ScratchDirectory()
        _ = try chain(dir)
        let ours = try QemuOracle.qcowkit("convert", in: dir.url, arguments: ["-O", "raw", "top.qcow2", "ours.raw"])
        #expect(ours.status == 0 && ours.output.isEmpty && ours.errorOutput.isEmpty)
        try QemuOracle.qemuImg("convert", "-O", "raw", "top.qcow2", "qemu.raw", in: dir.url)
        #expect(FileManager.default.contentsEqual(atPath: dir.file("ours.raw"), andPath: dir.file("qemu.raw")))

        let refused = try QemuOracle.qcowkit("convert", in: dir.url, arguments: ["-O", "vmdk", "top.qcow2", "x.vmdk"])
        #expect(refused.status == 1)
        #expect(refused.errorOutput == "qcowkit: Unknown file format 'vmdk'\n")
        #expect(!FileManager.default.fileExists(atPath: dir.file("x.vmdk")))

        // Converting onto a file of the source's own chain would truncate it before reading.
        let before = try Data(contentsOf: dir.url.appendingPathComponent("base.qcow2"))
        let ontoBacking = try QemuOracle.qcowkit("convert", in: dir.url, arguments: ["top.qcow2", "./base.qcow2"])
        #expect(ontoBacking.status == 1)
        #expect(ontoBacking.errorOutput.contains("it is an image of the source's backing chain"))
        #expect(try Data(contentsOf: dir.url.appendingPathComponent("base.qcow2")) == before)
    }

    @Test("open errors read like qemu-img's")
    func openErrorsMatch() throws {
        let dir = try ScratchDirectory()
        _ = try chain(dir)
        try FileManager.default.removeItem(atPath: dir.file("base.qcow2"))
        try Data("not an image".utf8).write(to: dir.url.appendingPathComponent("junk.bin"))
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-u", "-b", "junk.bin", "-F", "qcow2", "junk.qcow2", "1M", in: dir.url)
        let cases: [[String]] = [
            ["map", "top.qcow2"],                         // base missing, two links down
            ["map", "mid.qcow2"],
            ["map", dir.file("top.qcow2")],               // the backing named by its resolved path
            ["map", "nonexistent.qcow2"],
            ["map", "-f", "qcow2", "junk.bin"],
            ["map", "junk.qcow2"],                        // backing in the wrong format
            ["map", "-f", "foo", "mid.qcow2"],
            ["map", "--output=xml", "mid.qcow2"],
            ["convert", "-O", "raw", "mid.qcow2", "out.raw"],
            ["convert", "-O", "raw", "junk.bin", "/nonexistent/out.raw"],
        ]
        for arguments in cases {
            let ours = try QemuOracle.qcowkit(arguments[0], in: dir.url, arguments: Array(arguments.dropFirst()))
            let theirs = try QemuOracle.run(["qemu-img"] + arguments, in: dir.url, check: false)
            #expect(ours.status == 1 && theirs.status == 1, "\(arguments)")
            #expect(ours.errorOutput == renamed(theirs.errorOutput), "\(arguments)")
        }
    }

    @Test("backing loops, self-backing and pseudo-protocol names are refused (QEMU hangs or follows them)")
    func hostileChainsAreRefused() throws {
        let dir = try ScratchDirectory()
        // a -> b -> a
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "a.qcow2", "1M", in: dir.url)
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2", in: dir.url)
        try QemuOracle.qemuImg("rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2", in: dir.url)
        // self -> self
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "self.qcow2", "1M", in: dir.url)
        try QemuOracle.qemuImg("rebase", "-u", "-b", "self.qcow2", "-F", "qcow2", "self.qcow2", in: dir.url)
        // a backing described in JSON, and one over NBD
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-u", "-b", #"json:{"file.filename":"a.qcow2"}"#, "-F", "qcow2",
                               "json.qcow2", "1M", in: dir.url)
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-u", "-b", "nbd://localhost:10809/x", "-F", "raw",
                               "nbd.qcow2", "1M", in: dir.url)

        func openError(_ name: String) -> Qcow2Error? {
            do { _ = try ImageOpener.open(path: dir.file(name)); return nil } catch { return error as? Qcow2Error }
        }
        #expect(openError("a.qcow2") == .backingChainLoop(path: dir.file("a.qcow2")))
        #expect(openError("b.qcow2") == .backingChainLoop(path: dir.file("b.qcow2")))
        #expect(openError("self.qcow2") == .backingChainLoop(path: dir.file("self.qcow2")))
        #expect(openError("json.qcow2") == .inBackingFile(.pseudoProtocolBackingRefused(#"json:{"file.filename":"a.qcow2"}"#)))
        #expect(openError("nbd.qcow2")?.innermost == .pseudoProtocolBackingRefused("nbd://localhost:10809/x"))

        let loop = try QemuOracle.qcowkit("map", in: dir.url, arguments: ["a.qcow2"])
        #expect(loop.status == 1)
        #expect(loop.errorOutput == "qcowkit: Could not open 'a.qcow2': Backing chain loops back to 'a.qcow2'\n")
        let json = try QemuOracle.qcowkit("convert", in: dir.url, arguments: ["json.qcow2", "out.raw"])
        #expect(json.status == 1)
        #expect(json.errorOutput.contains("Could not open backing file: Backing file name 'json:"))
    }

    @Test("a missing backing is named in the error")
    func missingBacking() throws {
        let dir = try ScratchDirectory()
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", "top.qcow2", "1M", in: dir.url)
        #expect(throws: Qcow2Error.inBackingFile(.openFailed(path: dir.file("gone.qcow2"), errno: ENOENT))) {
            _ = try ImageOpener.open(path: dir.file("top.qcow2"))
        }
    }
}
