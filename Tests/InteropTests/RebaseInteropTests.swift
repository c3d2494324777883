// `qcowkit rebase` against `qemu-img rebase` (QEMU 7.2) on copies of the same
// chains: safe mode onto another image, onto an image of the old chain (by
// several spellings), onto nothing (-b ""), with backing files shorter and
// longer than the image, raw backing files, extended L2 and v2 images;
// unsafe mode (-u) header changes; -p progress lines; and qemu-img's
// refusals. Every resulting file is byte-identical to qemu-img's.
import Testing
import TestSupport

private typealias S = ImageVerbSetup

private func rebase(_ name: String, _ setup: [[String]], _ arguments: String...) -> ImageVerbCase {
    ImageVerbCase(name: name, setup: setup, arguments: ["rebase"] + arguments)
}

enum RebaseInteropCatalog {
    /// base <- mid <- img, with data, zeroes and discards in each layer, and
    /// an unrelated image `new` sharing part of base's data.
    static let chain: [[String]] = [
        S.qcow2("base", "64M"), S.io("base", "write -P 1 0 8M", "write -P 2 20M 1M", "write -z 30M 1M"),
        S.qcow2("mid", "64M", backing: "base"),
        S.io("mid", "write -P 3 4M 1M", "discard 20M 64k", "write -P 9 33M 100k", "write -z 1M 64k"),
        S.qcow2("img", "64M", backing: "mid"), S.io("img", "write -P 4 6M 3000", "write -c -P 5 10M 64k"),
        S.qcow2("new", "64M"), S.io("new", "write -P 1 0 5M", "write -P 5 40M 1M", "write -P 2 20M 512"),
    ]
    static let shortBase: [[String]] = [
        S.qcow2("base", "1M"), S.io("base", "write -P 1 0 1M"),
        S.qcow2("img", "8M", backing: "base"), S.io("img", "write -P 4 6M 3000"),
        S.raw("new.raw", bytes: 3 << 20),
    ]
    /// base (16M) <- mid (8M) <- img (16M): past mid's end img read zeroes,
    /// where base has data; rebased onto base, that part must be zeroed.
    static let shortMid: [[String]] = [
        S.qcow2("base", "16M"), S.io("base", "write -P 1 0 16M"),
        S.qcow2("mid", "8M", backing: "base"), S.io("mid", "write -P 2 1M 1M"),
        S.qcow2("img", "16M", backing: "mid"), S.io("img", "write -P 3 0 64k", "write -P 4 12M 64k"),
    ]
    /// A raw old backing, and a new one differing in one sector of each
    /// of 16 of the image's 64 KiB clusters.
    static let sectorDifferences: [[String]] = [
        S.raw("base.raw", bytes: 8 << 20, seed: 1), S.qcow2("img", "8M", backing: "base.raw", backingFormat: "raw"),
        S.qcow2("new", "8M"),
        ["qemu-io", "-f", "qcow2", "-c", "write -P 1 0 8M"] + (0..<16).flatMap { ["-c", "write -P 9 \($0 * 196608 + 4096) 512"] }
            + ["new"],
    ]
    static let extendedL2: [[String]] = [
        S.qcow2("base", "8M", "extended_l2=on"), S.io("base", "write -P 1 0 8M"),
        S.qcow2("img", "8M", "extended_l2=on", backing: "base"), S.io("img", "write -P 4 6M 3000", "write -z 1M 4k"),
        S.qcow2("new", "8M"), S.io("new", "write -P 1 0 1M", "write -P 1 1500k 3000"),
    ]
    static let version2: [[String]] = [
        S.qcow2("base", "8M"), S.io("base", "write -P 1 0 8M"),
        S.qcow2("img", "8M", "compat=0.10", backing: "base"), S.io("img", "write -P 4 6M 3000"),
        S.qcow2("new", "8M", "cluster_size=512"), S.io("new", "write -P 1 0 1M", "write -P 1 1500k 3000"),
    ]
    static let subdirectory: [[String]] = [
        ["mkdir", "sub"], S.qcow2("sub/base", "8M"), S.io("sub/base", "write -P 1 0 8M"),
        S.qcow2("sub/mid", "8M", backing: "base"), S.io("sub/mid", "write -P 2 1M 1M"),
        S.qcow2("sub/img", "8M", backing: "mid"), S.io("sub/img", "write -P 3 2M 100k"),
    ]
    static let raw: [[String]] = [S.raw("r.raw", bytes: 1 << 20), S.qcow2("new", "1M")]

    static let safe: [ImageVerbCase] = [
        rebase("onto an unrelated image", chain, "-b", "new", "-F", "qcow2", "img"),
        rebase("onto the bottom of the chain", chain, "-b", "base", "-F", "qcow2", "img"),
        rebase("onto the immediate backing (nothing to copy)", chain, "-b", "mid", "-F", "qcow2", "img"),
        rebase("onto nothing: flattened", chain, "-b", "", "img"),
        rebase("onto nothing, -F ignored", chain, "-b", "", "-F", "qcow2", "img"),
        rebase("with progress", chain, "-p", "-b", "new", "-F", "qcow2", "img"),
        rebase("flattened with progress", chain, "-p", "-b", "", "img"),
        rebase("-q silences -p", chain, "-q", "-p", "-b", "new", "-F", "qcow2", "img"),
        rebase("cache modes", chain, "-t", "none", "-T", "writethrough", "-b", "new", "-F", "qcow2", "img"),
        rebase("a qcow2 file read as raw", chain, "-b", "new", "-F", "raw", "img"),
        rebase("without -F: data copied, header refused", chain, "-b", "new", "img"),
        rebase("onto a longer raw file, old backing short", shortBase, "-b", "new.raw", "-F", "raw", "img"),
        rebase("short old backing flattened", shortBase, "-b", "", "img"),
        rebase("single sectors differing in 16 clusters", sectorDifferences, "-b", "new", "-F", "qcow2", "img"),
        rebase("onto the bottom of the chain, past a shorter old backing's end", shortMid,
               "-b", "base", "-F", "qcow2", "img"),
        rebase("extended L2 image", extendedL2, "-b", "new", "-F", "qcow2", "img"),
        rebase("v2 image onto 512-byte clusters", version2, "-b", "new", "-F", "qcow2", "img"),
        rebase("v2 image flattened", version2, "-b", "", "img"),
        rebase("prefix named relative to the image", subdirectory, "-b", "base", "-F", "qcow2", "sub/img"),
        rebase("prefix named with ./", subdirectory, "-b", "./base", "-F", "qcow2", "sub/img"),
        rebase("raw image: header refused", raw, "-b", "new", "-F", "qcow2", "r.raw"),
    ]

    static let unsafe: [ImageVerbCase] = [
        rebase("unsafe onto another name", chain, "-u", "-b", "new", "-F", "qcow2", "img"),
        rebase("unsafe onto a missing file", chain, "-u", "-b", "missing", "-F", "qcow2", "img"),
        rebase("unsafe with a format qcowkit cannot open", chain, "-u", "-b", "new", "-F", "vmdk", "img"),
        rebase("unsafe without -F", chain, "-u", "-b", "new", "img"),
        rebase("unsafe without -b: the backing dropped", chain, "-u", "img"),
        rebase("unsafe -b \"\"", chain, "-u", "-b", "", "img"),
        rebase("unsafe, 1023-byte name", chain, "-u", "-b", String(repeating: "a", count: 1023), "-F", "qcow2", "img"),
        rebase("unsafe, 1024-byte name", chain, "-u", "-b", String(repeating: "a", count: 1024), "-F", "qcow2", "img"),
        rebase("unsafe on a raw image", raw, "-f", "raw", "-u", "-b", "new", "-F", "qcow2", "r.raw"),
    ]

    static let refusals: [ImageVerbCase] = [
        rebase("no -b in safe mode", chain, "img"),
        rebase("unknown backing format", chain, "-u", "-b", "new", "-F", "foo", "img"),
        rebase("missing new backing", chain, "-b", "missing", "-F", "qcow2", "img"),
        rebase("invalid cache mode", chain, "-t", "foo", "-b", "new", "-F", "qcow2", "img"),
        rebase("invalid source cache mode, with progress", chain, "-p", "-T", "foo", "-b", "new", "-F", "qcow2", "img"),
        rebase("two images", chain, "-u", "-b", "new", "-F", "qcow2", "img", "mid"),
        rebase("missing option argument", chain, "img", "-b"),
    ]

    static let all = safe + unsafe + refusals
}

@Suite
struct RebaseInteropTests {
    @Test(arguments: RebaseInteropCatalog.all)
    func sameAsQemuImg(_ testCase: ImageVerbCase) throws {
        try ImageVerbOracle.run(testCase)
    }

    /// Beyond 7.2, as QEMU 8.2: a differing sector is written with the
    /// rest of its cluster, as the old backing reads it, so the write path
    /// does not read the rest again for copy on write. Counted with strace:
    /// of the raw old backing, the copy reads what it compares (8 MiB) and
    /// the format probe's first sectors, not the 16 clusters again.
    @Test func wholeClustersWithoutCopyOnWrite() throws {
        let scratch = try ScratchDirectory()
        for command in RebaseInteropCatalog.sectorDifferences { try QemuOracle.run(command, in: scratch.url) }
        let strace = try TestTools.program("strace", package: "strace")
        let trace = scratch.file("trace")
        try QemuOracle.run([strace, "-f", "-qq", "-y", "-e", "trace=pread64,preadv,preadv2,read", "-o", trace,
                            try TestTools.qcowkit(), "rebase", "-b", "new", "-F", "qcow2", "img"], in: scratch.url)
        var bytes = 0
        for line in try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n")
        where line.contains("base.raw>") {
            if let equals = line.range(of: ") = ", options: .backwards), let count = Int(line[equals.upperBound...]) {
                bytes += count
            }
        }
        #expect(bytes >= 8 << 20 && bytes < (8 << 20) + (64 << 10), "\(bytes) bytes read from the old backing")
    }

    /// -c is QEMU 8.2's (qemu-img 7.2 refuses it): the guest sees what
    /// qemu-img 7.2's rebase without -c gives, and what was copied is
    /// stored compressed.
    @Test func compressedCopy() throws {
        let scratch = try ScratchDirectory()
        for command in RebaseInteropCatalog.chain { try QemuOracle.run(command, in: scratch.url) }
        try QemuOracle.run(["cp", "img", "theirs"], in: scratch.url)
        try QemuOracle.run(["qemu-img", "rebase", "-b", "new", "-F", "qcow2", "theirs"], in: scratch.url)
        let ours = try QemuOracle.run([try TestTools.qcowkit(), "rebase", "-c", "-b", "new", "-F", "qcow2", "img"],
                                      in: scratch.url, check: false)
        #expect(ours.status == 0, "\(ours.errorOutput)")
        let compare = try QemuOracle.run(["qemu-img", "compare", "theirs", "img"], in: scratch.url, check: false)
        #expect(compare.status == 0, "\(compare.output)")
        let check = try QemuOracle.run(["qemu-img", "check", "img"], in: scratch.url, check: false)
        #expect(check.status == 0, "\(check.output)")
        #expect(!check.output.contains(" 0.00% compressed clusters"), "\(check.output)")
        let unsafe = try QemuOracle.run([try TestTools.qcowkit(), "rebase", "-c", "-u", "-b", "new", "-F", "qcow2", "img"],
                                        in: scratch.url, check: false)
        #expect(unsafe.status == 1 && unsafe.errorOutput == "qcowkit: Compression is not supported in unsafe mode\n")
    }
}
