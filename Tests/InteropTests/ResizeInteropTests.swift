// `qcowkit resize` against `qemu-img resize` (QEMU 7.2) on copies of the same
// images: growing (every preallocation mode, over longer backing files that
// must read as zeroes in the new part), shrinking (clusters, L2 tables and
// refcount blocks freed, the file cut), raw images, and qemu-img's refusals
// and usage errors. Every resulting file is byte-identical to qemu-img's.
import Testing

private typealias S = ImageVerbSetup

private func resize(_ name: String, _ setup: [[String]], _ arguments: String...) -> ImageVerbCase {
    ImageVerbCase(name: name, setup: setup, arguments: ["resize"] + arguments)
}

enum ResizeInteropCatalog {
    static let data = [S.qcow2("img", "10M"), S.io("img", "write -P 1 0 3M", "write -P 2 8M 1M")]
    static let big512 = [S.qcow2("img", "64M", "cluster_size=512"), S.io("img", "write -P 1 0 3M", "write -P 2 40M 20M")]
    static let chain = [S.qcow2("base", "64M"), S.io("base", "write -P 7 0 64M"),
                        S.qcow2("img", "10000384", backing: "base"), S.io("img", "write -P 1 1M 1M")]
    static let chainXL2 = [S.qcow2("base", "64M", "extended_l2=on"), S.io("base", "write -P 7 0 64M"),
                           S.qcow2("img", "10000384", "extended_l2=on", backing: "base"), S.io("img", "write -P 1 1M 1M")]
    static let chainV2 = [S.qcow2("base", "64M"), S.qcow2("img", "10M", "compat=0.10", backing: "base")]
    static let snapshot = [S.qcow2("img", "64M"), S.io("img", "write -P 7 0 10M"),
                           ["qemu-img", "snapshot", "-c", "s1", "img"], S.io("img", "write -P 8 0 1M")]
    static let snapshotV2 = [S.qcow2("img", "64M", "compat=0.10"), S.io("img", "write -P 7 0 10M"),
                             ["qemu-img", "snapshot", "-c", "s1", "img"]]
    static let mixed = [S.qcow2("img", "64M", "extended_l2=on"),
                        S.io("img", "write -P 1 0 3M", "write -P 2 40M 2M", "write -z 50M 1M", "discard 41M 64k")]
    static let compressed = [S.qcow2("img", "64M"), S.io("img", "write -c -P 1 0 64k", "write -c -P 2 40M 64k",
                                                         "write -c -P 3 41M 64k")]
    static let raw = [S.raw("r.raw", bytes: 1000)]

    static let grow: [ImageVerbCase] = [
        resize("grow", data, "img", "20M"),
        resize("grow relative", data, "img", "+1G"),
        resize("grow 512-byte clusters past many L2 tables", big512, "img", "1G"),
        resize("grow -q", data, "-q", "img", "1T"),
    ] + ["metadata", "falloc", "full"].flatMap { mode in [
        resize("grow, preallocation=\(mode)", data, "--preallocation=\(mode)", "img", "30M"),
        resize("grow over a longer backing, preallocation=\(mode)", chain, "--preallocation=\(mode)", "img", "30M"),
    ] } + [
        resize("grow over a longer backing: the new part reads as zeroes", chain, "img", "20M"),
        resize("grow over a longer backing, extended L2", chainXL2, "img", "20M"),
        resize("grow past the backing's end", chain, "img", "100M"),
        resize("grow a v2 image over a longer backing (refused)", chainV2, "img", "20M"),
        resize("grow a v2 image over a longer backing, preallocation=full", chainV2, "--preallocation=full", "img", "20M"),
        resize("grow with a snapshot", snapshot, "img", "2G"),
        resize("grow a v2 image with a snapshot (refused)", snapshotV2, "img", "2G"),
        resize("grow beyond the L1 limit (refused)", data, "img", "4P"),
    ]

    static let shrink: [ImageVerbCase] = [
        resize("shrink", data, "--shrink", "img", "5M"),
        resize("shrink to an unaligned size", data, "--shrink", "img", "1000000"),
        resize("shrink relative", data, "--shrink", "img", "--", "-9M"),
        resize("shrink 512-byte clusters: L2 tables and refcount blocks freed", big512, "--shrink", "img", "2M"),
        resize("shrink 512-byte clusters, 1-bit refcounts",
               [S.qcow2("img", "64M", "cluster_size=512,refcount_bits=1"), S.io("img", "write -P 1 0 3M", "write -P 2 40M 20M")],
               "--shrink", "img", "2M"),
        resize("shrink, extended L2, zeroes and discards", mixed, "--shrink", "img", "41M"),
        resize("shrink a v2 image",
               [S.qcow2("img", "64M", "compat=0.10"), S.io("img", "write -P 1 0 3M", "write -P 2 40M 2M")],
               "--shrink", "img", "41M"),
        resize("shrink over compressed clusters", compressed, "--shrink", "img", "1M"),
        resize("shrink, lazy refcounts",
               [S.qcow2("img", "64M", "lazy_refcounts=on"), S.io("img", "write -P 1 0 3M", "write -P 2 40M 2M")],
               "--shrink", "img", "41M"),
        resize("shrink with a snapshot", snapshot, "--shrink", "img", "2M"),
        resize("shrink a v2 image with a backing file", chainV2, "--shrink", "img", "2M"),
    ]

    static let refusals: [ImageVerbCase] = [
        resize("shrink without --shrink", data, "img", "5M"),
        resize("shrink relative without --shrink", data, "img", "-1M"),
        resize("size not a multiple of 512", data, "img", "+1000"),
        resize("size zero", data, "img", "0"),
        resize("size negative", data, "--shrink", "img", "-20M"),
        resize("size 8E wraps negative", data, "img", "8E"),
        resize("size out of range", data, "img", "17E"),
        resize("size not a number", data, "img", "abc"),
        resize("hex size with a suffix", data, "img", "0x10k"),
        resize("preallocation when shrinking", data, "--shrink", "--preallocation=full", "img", "1M"),
        resize("preallocation without growing", data, "--preallocation=full", "img", "10M"),
        resize("unknown preallocation mode", data, "--preallocation=foo", "img", "+1M"),
        resize("missing option argument", data, "--preallocation", "img"),
        resize("not enough arguments", data, "img"),
        resize("unknown option", data, "-x", "img", "1G"),
        resize("too many operands", data, "img", "other", "1G"),
        resize("unknown format", data, "-f", "foo", "img", "+1M"),
        resize("missing image", data, "missing", "+1M"),
        resize("qcow2 resized as raw", data, "img", "-f", "raw", "+1M"),
    ]

    static let rawImages: [ImageVerbCase] = [
        resize("raw, probed: rounded up to a sector", raw, "r.raw", "+0"),
        resize("raw, probed: shrink refused", raw, "r.raw", "1000"),
        resize("raw shrink", raw, "-f", "raw", "--shrink", "r.raw", "999"),
        resize("raw grow", raw, "-f", "raw", "r.raw", "1G"),
        resize("raw, preallocation=metadata (refused)", raw, "-f", "raw", "--preallocation=metadata", "r.raw", "5000"),
        resize("raw, preallocation=falloc", raw, "-f", "raw", "--preallocation=falloc", "r.raw", "5000"),
        resize("raw, preallocation=full", raw, "-f", "raw", "--preallocation=full", "r.raw", "50000"),
        resize("empty raw file", [["touch", "e.raw"]], "-f", "raw", "e.raw", "1M"),
    ]

    static let all = grow + shrink + refusals + rawImages
}

@Suite
struct ResizeInteropTests {
    @Test(arguments: ResizeInteropCatalog.all)
    func sameAsQemuImg(_ testCase: ImageVerbCase) throws {
        try ImageVerbOracle.run(testCase)
    }
}
