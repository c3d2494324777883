// `qcowkit convert -O qcow2` against `qemu-img convert -O qcow2`: the same
// sources converted by both tools must give the same image, byte for byte
// (allocation follows QEMU's placement), and `qemu-img check` must be clean.
import Foundation
import Testing

struct ConvertQcow2Case: CustomStringConvertible, Sendable {
    var name: String
    /// Shell-free steps that make `src` in the scratch directory.
    var make: @Sendable (ScratchDirectory) throws -> String
    var sourceFormat: String
    var convertOptions: [String]
    var description: String { name }
}

private func rawWithHoles(_ dir: ScratchDirectory) throws -> String {
    let path = dir.file("src.raw")
    try QemuOracle.qemuImg("create", "-q", "-f", "raw", path, "8M")
    try QemuOracle.qemuIO(path, ["write -P 0x11 0 64k", "write -P 0x22 1M 4k", "write -P 0x33 3M 130k",
                                 "write -z 4M 64k", "write -P 0x44 8372224 4k"], format: "raw")
    return path
}

/// A qcow2 overlay on a qcow2 base (4 KiB clusters), each with data,
/// zeroes and a compressed cluster (also ConvertCompressedInteropTests').
func qcow2Chain(_ dir: ScratchDirectory) throws -> String {
    let base = dir.file("base.qcow2"), top = dir.file("top.qcow2")
    try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", base, "6M")
    try QemuOracle.qemuIO(base, ["write -P 0x55 0 1M", "write -P 0x66 2M 12k", "write -c -P 0x77 4M 64k"])
    try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
    try QemuOracle.qemuIO(top, ["write -P 0x88 512k 1M", "write -z 2M 4k", "write -P 0x99 5M 3k"])
    return top
}

let convertQcow2Cases: [ConvertQcow2Case] = [
    ConvertQcow2Case(name: "raw with holes, defaults", make: rawWithHoles, sourceFormat: "raw", convertOptions: []),
    ConvertQcow2Case(name: "raw, 512-byte clusters, refcount_bits=1", make: rawWithHoles, sourceFormat: "raw",
                     convertOptions: ["-o", "cluster_size=512,refcount_bits=1"]),
    ConvertQcow2Case(name: "raw, compat=0.10", make: rawWithHoles, sourceFormat: "raw", convertOptions: ["-o", "compat=0.10"]),
    ConvertQcow2Case(name: "raw, extended_l2", make: rawWithHoles, sourceFormat: "raw",
                     convertOptions: ["-o", "extended_l2=on,cluster_size=128k"]),
    ConvertQcow2Case(name: "qcow2 chain flattened, 2M clusters", make: qcow2Chain, sourceFormat: "qcow2",
                     convertOptions: ["-o", "cluster_size=2M"]),
    ConvertQcow2Case(name: "qcow2 chain flattened, compressed zlib", make: qcow2Chain, sourceFormat: "qcow2",
                     convertOptions: ["-c"]),
    ConvertQcow2Case(name: "raw compressed zstd", make: rawWithHoles, sourceFormat: "raw",
                     convertOptions: ["-c", "-o", "compression_type=zstd"]),
]

@Suite("convert -O qcow2 against qemu-img")
struct ConvertQcow2InteropTests {
    @Test("same image bytes as qemu-img convert", arguments: convertQcow2Cases)
    func sameImage(_ c: ConvertQcow2Case) throws {
        let dir = try ScratchDirectory()
        let source = try c.make(dir)
        let theirs = dir.file("theirs.qcow2"), ours = dir.file("ours.qcow2")
        try QemuOracle.run(["qemu-img", "convert", "-f", c.sourceFormat, "-O", "qcow2"] + c.convertOptions + [source, theirs])
        let result = try QemuOracle.qcowkit("convert", in: dir.url,
                                            arguments: ["-f", c.sourceFormat, "-O", "qcow2"] + c.convertOptions + [source, ours])
        #expect(result.status == 0, "\(result.errorOutput)")
        guard result.status == 0 else { return }
        #expect(result.output.isEmpty)

        let check = try QemuOracle.qemuImg("check", ours, check: false)
        #expect(check.status == 0, "qemu-img check: \(check.output)")
        let compare = try QemuOracle.qemuImg("compare", "-f", c.sourceFormat, "-F", "qcow2", source, ours, check: false)
        #expect(compare.status == 0, "qemu-img compare: \(compare.output)")
        let same = try QemuOracle.run(["cmp", theirs, ours], check: false)
        #expect(same.status == 0, "not byte-identical to qemu-img's: \(same.output)")
    }

    @Test("a bad option list is refused before anything is written")
    func badOptions() throws {
        let dir = try ScratchDirectory()
        let source = try rawWithHoles(dir)
        let out = dir.file("out.qcow2")
        let result = try QemuOracle.qcowkit("convert", in: dir.url, arguments: ["-O", "qcow2", "-o", "cluster_size=3000", source, out])
        #expect(result.status == 1)
        #expect(result.errorOutput.hasPrefix("qcowkit: "))
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
