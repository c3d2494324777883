// convert -l and measure -l against qemu-img 7.2: an internal snapshot read
// in place of the image's current state (by ID, by name, or as
// snapshot.id=/snapshot.name=), the same messages for snapshots that do not
// exist and bad parameters, and targets byte-identical to qemu-img's.
import Foundation
import Testing

@Suite("convert -l / measure -l against qemu-img 7.2")
struct ConvertSnapshotInteropTests {
    /// snap.qcow2: two snapshots taken at different sizes with writes,
    /// zero writes, discards and compressed clusters between them; over a
    /// backing file, so that unallocated clusters read from it.
    static func fixtures(_ run: QemuImgDifferential) throws {
        func img(_ arguments: String...) throws { try QemuOracle.run(["qemu-img"] + arguments, in: run.directory) }
        func io(_ commands: [String]) throws { try QemuOracle.qemuIO("snap.qcow2", commands, in: run.directory) }
        try img("create", "-q", "-f", "qcow2", "back.qcow2", "2M")
        try QemuOracle.qemuIO("back.qcow2", ["write -P 8 0 2M"], in: run.directory)
        try img("create", "-q", "-f", "qcow2", "-b", "back.qcow2", "-F", "qcow2", "snap.qcow2", "1M")
        try io(["write -P 1 0 128k", "write -c -P 3 256k 64k", "write -z 512k 64k"])
        try img("snapshot", "-c", "one", "snap.qcow2")
        try io(["write -P 2 64k 128k", "discard 256k 64k"])
        try img("resize", "-q", "snap.qcow2", "2M")
        try io(["write -P 4 1536k 64k"])
        try img("snapshot", "-c", "two", "snap.qcow2")
        try io(["write -P 5 0 1M"])
        try img("create", "-q", "-f", "raw", "plain.raw", "1M")
    }

    @Test("by ID, name and snapshot.* parameters; raw and qcow2 targets byte-identical")
    func convert() throws {
        let run = try QemuImgDifferential()
        try Self.fixtures(run)
        let parameters = ["one", "1", "two", "snapshot.name=one", "snapshot.id=2", "snapshot.id=1,snapshot.name=one",
                          "snapshot.id=1,snapshot.name=two", "nope", "snapshot.name=nope", "snapshot.foo=1", "snapshot.id"]
        for parameter in parameters {
            for format in ["qcow2", "raw"] {
                let theirs = try run.theirs(["convert", "-l", parameter, "-O", format, "snap.qcow2", "theirs.out"])
                let ours = try run.mine(["convert", "-l", parameter, "-O", format, "snap.qcow2", "ours.out"])
                #expect(ours == theirs, "\(parameter) \(format)")
                if theirs.status == 0 { #expect(run.sameBytes("theirs.out", "ours.out"), "\(parameter) \(format)") }
                try? FileManager.default.removeItem(atPath: run.file("theirs.out"))
                try? FileManager.default.removeItem(atPath: run.file("ours.out"))
            }
        }
        let cases: [[String]] = [
            ["convert", "-l", "one", "-O", "raw", "snap.qcow2", "snap.qcow2", "x.raw"],
            ["convert", "-l", "one", "-f", "raw", "-O", "raw", "snap.qcow2", "x.raw"],
            ["convert", "-l", "one", "-O", "raw", "plain.raw", "x.raw"],
        ]
        for arguments in cases {
            #expect(try run.difference(arguments) == nil)
        }
    }

    @Test("measure -l: the snapshot's sizes and the same errors")
    func measure() throws {
        let run = try QemuImgDifferential()
        try Self.fixtures(run)
        for parameter in ["one", "two", "snapshot.name=two", "nope", "snapshot.x=1"] {
            for output in ["qcow2", "raw"] {
                let arguments = ["measure", "-O", output, "-l", parameter, "snap.qcow2"]
                #expect(try run.difference(arguments) == nil, "\(arguments)")
            }
        }
    }
}
