// `qcowkit commit` against `qemu-img commit` (QEMU 7.2) on copies of the same
// chains: into the immediate backing file or into -b's image further down,
// with -d, -r, -p, -q, bases shorter than the image (grown, also over a
// longer backing file of their own, and raw), v2, extended L2 and snapshot
// images (which are emptied by discarding), and qemu-img's refusals.
// The emptied (or kept) image is byte-identical to qemu-img's. Where qemu-img
// copies more than one chunk into base, its mirror job's writes complete in
// an order that varies from run to run (so does where base's clusters land,
// and whether a freed cluster is reused: measured on the three-image chain,
// 4 of 8 runs gave a one-cluster-longer file): those bases are compared by
// guest content; single-chunk commits, refusals and raw bases byte for byte.
// Every qcow2 image qcowkit leaves must pass `qemu-img check`.
import Testing

private typealias S = ImageVerbSetup

private func commit(_ name: String, _ setup: [[String]], _ arguments: String..., contentOnly: Set<String> = [],
                    timedProgress: Bool = false) -> ImageVerbCase {
    ImageVerbCase(name: name, setup: setup, arguments: ["commit"] + arguments, contentOnly: contentOnly,
                  timedProgress: timedProgress)
}

enum CommitInteropCatalog {
    /// base <- img, 64 MiB, with data, zeroes, a discard and a compressed
    /// cluster in the top: many chunks.
    static let large: [[String]] = [
        S.qcow2("base", "64M"), S.io("base", "write -P 1 0 8M", "write -P 2 20M 1M"),
        S.qcow2("img", "64M", backing: "base"),
        S.io("img", "write -P 3 4M 5M", "write -z 20M 64k", "write -P 5 30M 20M", "discard 6M 64k",
             "write -c -P 6 60M 64k"),
    ]
    /// base (8M) <- mid (16M) <- img (24M).
    static let three: [[String]] = [
        S.qcow2("base", "8M"), S.io("base", "write -P 1 0 8M"),
        S.qcow2("mid", "16M", backing: "base"), S.io("mid", "write -P 2 1M 1M", "write -z 3M 1M", "write -P 7 12M 1M"),
        S.qcow2("img", "24M", backing: "mid"), S.io("img", "write -P 3 2M 100k", "discard 1M 64k", "write -P 8 20M 512"),
    ]
    static let version2: [[String]] = [
        S.qcow2("base", "8M"), S.io("base", "write -P 1 0 8M"),
        S.qcow2("img", "8M", "compat=0.10", backing: "base"), S.io("img", "write -P 3 2M 100k"),
    ]
    static let snapshot: [[String]] = [
        S.qcow2("base", "8M"), S.qcow2("img", "8M", backing: "base"), S.io("img", "write -P 3 2M 100k"),
        ["qemu-img", "snapshot", "-c", "s1", "img"], S.io("img", "write -P 4 3M 100k"),
    ]
    static let extendedL2: [[String]] = [
        S.qcow2("base", "8M", "extended_l2=on"), S.io("base", "write -P 1 0 8M"),
        S.qcow2("img", "8M", "extended_l2=on", backing: "base"), S.io("img", "write -P 3 2M 100k", "write -z 5M 4k"),
    ]
    static let rawBase: [[String]] = [
        S.raw("base.raw", bytes: 8_000_000), S.qcow2("img", "16M", backing: "base.raw", backingFormat: "raw"),
        S.io("img", "write -P 3 2M 100k", "write -P 4 12M 1M"),
    ]
    /// A base shorter than the image, over a longer backing of its own:
    /// the grown part must read as zeroes before the copy.
    static let grownBase: [[String]] = [
        S.qcow2("bb", "64M"), S.io("bb", "write -P 9 0 64M"),
        S.qcow2("base", "8M", backing: "bb"), S.io("base", "write -P 1 0 1M"),
        S.qcow2("img", "32M", backing: "base"), S.io("img", "write -P 3 2M 100k", "write -P 4 20M 1M"),
    ]
    static let grownV2Base: [[String]] = [
        S.qcow2("bb", "64M"), S.io("bb", "write -P 9 0 64M"),
        S.qcow2("base", "8M", "compat=0.10", backing: "bb"),
        S.qcow2("img", "32M", backing: "base"), S.io("img", "write -P 4 20M 1M"),
    ]
    static let lazy: [[String]] = [
        S.qcow2("base", "8M"), S.io("base", "write -P 1 0 8M"),
        S.qcow2("img", "8M", "lazy_refcounts=on", backing: "base"), S.io("img", "write -P 3 2M 100k"),
    ]
    /// An L1 table of 512 clusters: more than one 64-entry refcount block
    /// covers, so the image is emptied by discarding.
    static let bigL1: [[String]] = [
        S.qcow2("base", "8M"),
        S.qcow2("img", "1G", "cluster_size=512,refcount_bits=64", backing: "base"), S.io("img", "write -P 3 2M 100k"),
    ]
    static let alone: [[String]] = [S.qcow2("img", "8M")]

    static let cases: [ImageVerbCase] = [
        commit("into the backing file, many chunks", large, "img", contentOnly: ["base"]),
        commit("-d keeps the image", large, "-d", "img", contentOnly: ["base"]),
        commit("-p", large, "-p", "img", contentOnly: ["base"], timedProgress: true),
        commit("-q -p", large, "-q", "-p", "img", contentOnly: ["base"]),
        commit("-r rate limit", large, "-r", "64M", "img", contentOnly: ["base"]),
        commit("cache mode", large, "-t", "none", "img", contentOnly: ["base"]),
        commit("into the immediate backing of three", three, "img", contentOnly: ["mid"]),
        commit("-b the bottom (implies -d)", three, "-b", "base", "img", contentOnly: ["base"]),
        commit("-b the immediate backing", three, "-b", "mid", "img", contentOnly: ["mid"]),
        commit("-d -b the bottom", three, "-d", "-b", "base", "img", contentOnly: ["base"]),
        commit("v2 image: emptied by discarding", version2, "img"),
        commit("image with a snapshot: emptied by discarding", snapshot, "img", contentOnly: ["base"]),
        commit("extended L2", extendedL2, "img", contentOnly: ["base"]),
        commit("lazy refcounts", lazy, "img"),
        commit("L1 table too large to rebuild: emptied by discarding", bigL1, "img", contentOnly: ["base"]),
        commit("into a shorter raw file", rawBase, "img"),
        commit("into a shorter base over a longer backing", grownBase, "img", contentOnly: ["base"]),
        commit("into a shorter v2 base over a longer backing (refused)", grownV2Base, "img"),
    ]

    static let refusals: [ImageVerbCase] = [
        commit("no backing file", alone, "img"),
        commit("-b not in the chain", three, "-b", "nothere", "img"),
        commit("missing image", alone, "missing"),
        commit("two images", alone, "img", "img2"),
        commit("unknown option", alone, "-x", "img"),
        commit("invalid cache mode", large, "-t", "foo", "img"),
        commit("invalid rate limit", large, "-r", "1x", "img"),
        commit("rate limit out of range", large, "-r", "9E", "img"),
        commit("unknown format", large, "-f", "foo", "img"),
    ]

    static let all = cases + refusals
}

@Suite
struct CommitInteropTests {
    @Test(arguments: CommitInteropCatalog.all)
    func sameAsQemuImg(_ testCase: ImageVerbCase) throws {
        try ImageVerbOracle.run(testCase)
    }
}
