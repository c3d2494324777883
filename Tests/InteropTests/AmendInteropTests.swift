// `qcowkit amend` against `qemu-img amend` (QEMU 7.2) on copies of the same
// images made by qemu-img and qemu-io (ImageVerbOracle): data, zero
// clusters (plain and preallocated), compressed clusters, snapshots, backing
// files, extended L2, cluster sizes from 512 bytes to 64 KiB, every refcount
// width, persistent bitmaps (stored anew on close, as QEMU does). Compared: standard output (with -p, every progress step), standard
// error (program name aside), exit status, and every file byte for byte;
// our images pass `qemu-img check` (or fail it as QEMU's own result does).
import Testing

private typealias S = ImageVerbSetup

private func amend(_ name: String, _ setup: [[String]], _ arguments: String..., checkAsQemu: Bool = false) -> ImageVerbCase {
    ImageVerbCase(name: name, setup: setup, arguments: ["amend"] + arguments, checkAsQemu: checkAsQemu)
}

enum AmendInteropCatalog {
    /// Data, zero clusters, a compressed cluster, a snapshot sharing them,
    /// then changes after the snapshot.
    static func mixed(_ options: String) -> [[String]] {
        [S.qcow2("img", "64M", options),
         S.io("img", "write -P 1 0 3M", "write -z 4M 1M", "write -c -P 2 8M 64k", "write -P 3 20M 2M"),
         ["qemu-img", "snapshot", "-c", "s1", "img"],
         S.io("img", "write -z 0 64k", "write -P 5 9M 1M", "write -z -u 20M 64k")]
    }
    static let plain = [S.qcow2("img", "64M"), S.io("img", "write -P 1 0 1M", "write -z 4M 1M")]
    static let v2 = [S.qcow2("img", "64M", "compat=0.10"), S.io("img", "write -P 1 0 1M")]
    static let v2Snapshot = v2 + [["qemu-img", "snapshot", "-c", "s1", "img"], S.io("img", "write -P 2 0 64k")]
    static let base = [S.qcow2("base", "64M"), S.io("base", "write -P 7 0 64M")]
    static let chain = base + [S.qcow2("img", "64M", backing: "base"),
                               S.io("img", "write -z 0 1M", "write -P 1 2M 1M", "write -z -u 4M 128k")]
    static let chainSnapshot = chain + [["qemu-img", "snapshot", "-c", "s1", "img"],
                                        S.io("img", "write -z 8M 1M", "write -P 2 0 64k")]
    static let shortChain = base + [S.qcow2("img", "10M", backing: "base"), S.io("img", "write -P 1 1M 1M")]
    /// An image qemu-io left dirty (lazy refcounts, killed).
    static let dirty = [S.qcow2("img", "64M", "lazy_refcounts=on"),
                        ["sh", "-c", "qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'sigraise 9' img 2>/dev/null; true"]]
    /// Rewrites an image's snapshot table without extra data, as QEMU
    /// before 4.2 wrote version 2 tables (argument: the image).
    static let stripSnapshotExtraData = """
        import struct, sys
        f = open(sys.argv[1], 'r+b'); h = f.read(72)
        count, offset = struct.unpack('>IQ', h[60:72])
        f.seek(offset); out = b''
        for _ in range(count):
            l1o, l1s, ids, ns, ds, dn, vmc, vms, eds = struct.unpack('>QIHHIIQII', f.read(40))
            f.read(eds); ident = f.read(ids); name = f.read(ns); f.read((-(40 + eds + ids + ns)) % 8)
            entry = struct.pack('>QIHHIIQII', l1o, l1s, ids, ns, ds, dn, vmc, vms, 0) + ident + name
            out += entry + b'\\0' * ((-len(entry)) % 8)
        f.seek(offset); f.write(out)
        """
    static let v2OldSnapshots = v2 + [["qemu-img", "snapshot", "-c", "s1", "img"], ["qemu-img", "snapshot", "-c", "two", "img"],
                                      ["python3", "-c", stripSnapshotExtraData, "img"]]
    /// 512-byte clusters and 8 MiB of data: new refcount structures of
    /// many blocks and tables of several clusters.
    static let small = [S.qcow2("img", "64M", "cluster_size=512"),
                        S.io("img", "write -P 1 0 8M", "write -z 1M 1M", "write -c -P 2 9M 64k")]

    static let refcountWidths: [ImageVerbCase] = [
        amend("refcount_bits=1 refused: a cluster has refcount 2", mixed(""), "-o", "refcount_bits=1", "img"),
        amend("refcount_bits=2, 4 KiB clusters", mixed("cluster_size=4k"), "-o", "refcount_bits=2", "img"),
        amend("refcount_bits=4, 512-byte clusters", mixed("cluster_size=512"), "-o", "refcount_bits=4", "img"),
        amend("refcount_bits=8", mixed(""), "-o", "refcount_bits=8", "img"),
        amend("refcount_bits=32, 4 KiB clusters", mixed("cluster_size=4k"), "-o", "refcount_bits=32", "img"),
        amend("refcount_bits=64", mixed(""), "-o", "refcount_bits=64", "img"),
        amend("refcount_bits=64, 512-byte clusters, 8 MiB", small, "-o", "refcount_bits=64", "img"),
        amend("refcount_bits=1 to 64, 512-byte clusters",
              [S.qcow2("img", "64M", "cluster_size=512,refcount_bits=1"), S.io("img", "write -P 1 0 8M")],
              "-o", "refcount_bits=64", "img"),
        amend("refcount_bits=64 to 2, with a snapshot",
              [S.qcow2("img", "64M", "cluster_size=512,refcount_bits=64"), S.io("img", "write -P 1 0 4M"),
               ["qemu-img", "snapshot", "-c", "s", "img"]],
              "-o", "refcount_bits=2", "img"),
        amend("refcount_bits=8 to 16", mixed("refcount_bits=8"), "-o", "refcount_bits=16", "img"),
        amend("refcount_bits=8, extended L2", mixed("extended_l2=on"), "-o", "refcount_bits=8", "img"),
        amend("refcount_bits=8, dirty image repaired on open", dirty, "-o", "refcount_bits=8", "img"),
        amend("refcount_bits=8 with a backing file", chain, "-o", "refcount_bits=8", "img"),
        amend("-p refcount_bits=32, 1 KiB clusters",
              [S.qcow2("img", "64M", "cluster_size=1k,refcount_bits=2"), S.io("img", "write -P 1 0 8M"),
               ["qemu-img", "snapshot", "-c", "s", "img"]],
              "-p", "-o", "refcount_bits=32", "img"),
    ]

    static let versions: [ImageVerbCase] = [
        amend("downgrade: zero clusters dropped or kept, snapshot's L2 tables too", mixed(""),
              "-o", "compat=0.10", "img", checkAsQemu: true),
        amend("downgrade, 512-byte clusters", mixed("cluster_size=512"), "-o", "compat=0.10", "img", checkAsQemu: true),
        amend("downgrade over a backing file: zero clusters allocated", chain, "-o", "compat=0.10", "img"),
        amend("downgrade over a backing file with a snapshot", chainSnapshot, "-o", "compat=0.10", "img"),
        amend("downgrade a dirty image", dirty, "-o", "compat=0.10", "img"),
        amend("downgrade with lazy refcounts",
              [S.qcow2("img", "64M", "lazy_refcounts=on"), S.io("img", "write -P 1 0 1M")], "-o", "compat=0.10", "img"),
        amend("downgrade zstd without compressed clusters",
              [S.qcow2("img", "64M", "compression_type=zstd"), S.io("img", "write -P 1 0 1M")], "-o", "compat=0.10", "img"),
        amend("downgrade zstd with compressed clusters (refused)",
              [S.qcow2("img", "64M", "compression_type=zstd"), S.io("img", "write -c -P 1 0 64k")],
              "-o", "compat=0.10", "img"),
        amend("downgrade extended L2 (refused)", mixed("extended_l2=on"), "-o", "compat=0.10", "img"),
        amend("downgrade refcount_bits=8 (refused)", mixed("refcount_bits=8"), "-o", "compat=0.10", "img"),
        amend("downgrade with refcount_bits=16", mixed("refcount_bits=8"), "-o", "compat=0.10,refcount_bits=16", "img",
              checkAsQemu: true),
        amend("downgrade with a snapshot of another size (refused)",
              plain + [["qemu-img", "snapshot", "-c", "s1", "img"], ["qemu-img", "resize", "img", "128M"]],
              "-o", "compat=0.10", "img"),
        amend("downgrade and lazy_refcounts=on (refused)", plain, "-o", "compat=0.10,lazy_refcounts=on", "img"),
        amend("downgrade and shrink", mixed("cluster_size=4k"), "-o", "compat=0.10,size=8M", "img", checkAsQemu: true),
        amend("upgrade", v2, "-o", "compat=1.1", "img"),
        amend("upgrade (v3)", v2, "-o", "compat=v3", "img"),
        amend("upgrade with a snapshot", v2Snapshot, "-o", "compat=1.1", "img"),
        amend("upgrade: snapshots without extra data get a new table", v2OldSnapshots, "-o", "compat=1.1", "img"),
        amend("downgrade: zero clusters in an L2 table shared with a snapshot",
              Array(chain.dropLast()) + [S.io("img", "write -z 0 1M", "write -P 1 2M 1M"), ["qemu-img", "snapshot", "-c", "s1", "img"]],
              "-o", "compat=0.10", "img"),
        amend("upgrade, refcount_bits=4, lazy refcounts",
              [S.qcow2("img", "64M", "compat=0.10,cluster_size=4k"), S.io("img", "write -P 1 0 1M")],
              "-o", "compat=1.1,refcount_bits=4,lazy_refcounts=on", "img"),
        amend("refcount_bits=8 on a v2 image (refused)", v2, "-o", "refcount_bits=8", "img"),
        amend("lazy_refcounts=on on a v2 image (refused)", v2, "-o", "lazy_refcounts=on", "img"),
        amend("-p upgrade and refcount_bits=8", v2, "-p", "-o", "compat=1.1,refcount_bits=8", "img"),
        amend("-p downgrade and grow",
              [S.qcow2("img", "64M"), S.io("img", "write -P 1 0 1M", "write -z 4M 8M")],
              "-p", "-o", "compat=0.10,size=128M", "img"),
    ]

    static let others: [ImageVerbCase] = [
        amend("lazy_refcounts=on", plain, "-o", "lazy_refcounts=on", "img"),
        amend("lazy_refcounts=off", [S.qcow2("img", "64M", "lazy_refcounts=on"), S.io("img", "write -P 1 0 1M")],
              "-o", "lazy_refcounts=off", "img"),
        amend("lazy_refcounts=off on a dirty image", dirty, "-o", "lazy_refcounts=off", "img"),
        amend("grow", plain, "-o", "size=1G", "img"),
        amend("shrink (no --shrink needed)", mixed(""), "-o", "size=16M", "img"),
        amend("grow over a longer backing file", shortChain, "-o", "size=30M", "img"),
        amend("size not a multiple of 512", plain, "-o", "size=1000", "img"),
        amend("size 0 leaves the size", plain, "-o", "size=0", "img"),
        amend("hex size with a suffix", plain, "-o", "size=0x10M", "img"),
        amend("the same backing file and format", chain, "-o", "backing_file=base,backing_fmt=qcow2", "img"),
        amend("the backing file without its format (refused)", chain, "-o", "backing_file=base", "img"),
        amend("another backing file (refused)", chain, "-o", "backing_file=other,backing_fmt=qcow2", "img"),
        amend("no backing file (refused)", chain, "-o", "backing_file=", "img"),
        amend("-p grow", plain, "-p", "-o", "size=1G", "img"),
        amend("-p -q", plain, "-p", "-q", "-o", "refcount_bits=8", "img"),
        amend("--force, -t", plain, "--force", "-t", "none", "-o", "lazy_refcounts=on", "img"),
        amend("-o twice", plain, "-o", "compat=0.10", "-o", "compat=1.1", "img"),
        amend("--image-opts", plain, "--image-opts", "-o", "refcount_bits=8", "driver=qcow2,file.filename=img"),
    ]

    static let refusals: [ImageVerbCase] = ["cluster_size=4k", "extended_l2=on", "preallocation=off",
                                           "compression_type=zstd", "encryption=on", "size=1G,cluster_size=4k"].map {
        amend("create-only option \($0)", plain, "-o", $0, "img")
    } + [
        amend("unknown option", plain, "-o", "foo=bar", "img"),
        amend("protocol option", plain, "-o", "nocow=on", "img"),
        amend("bad value of a create-only option", plain, "-o", "cluster_size=abc", "img"),
        amend("unknown compat", plain, "-o", "compat=2", "img"),
        amend("refcount_bits not a power of two", plain, "-o", "refcount_bits=3", "img"),
        amend("refcount_bits too wide", plain, "-o", "refcount_bits=128", "img"),
        amend("refcount_bits not a number", plain, "-o", "refcount_bits=abc", "img"),
        amend("errors in declaration order", plain, "-o", "refcount_bits=3,compat=2", "img"),
        amend("lazy_refcounts not a bool", plain, "-o", "lazy_refcounts=maybe", "img"),
        amend("data_file", plain, "-o", "data_file=x", "img"),
        amend("data_file_raw=on", plain, "-o", "data_file_raw=on", "img"),
        amend("data_file_raw=off", plain, "-o", "data_file_raw=off", "img"),
        amend("encryption options", plain, "-o", "encrypt.keyslot=1", "img"),
        amend("empty option list", plain, "-o", "", "img"),
        amend("no options", plain, "img"),
        amend("no image", plain, "-o", "size=1M"),
        amend("two images", plain, "-o", "size=1M", "img", "img"),
        amend("-U (not an amend flag)", plain, "-U", "-o", "size=1M", "img"),
        amend("bad cache mode", plain, "-t", "foo", "-o", "size=1M", "img"),
        amend("missing image", plain, "-o", "size=1M", "missing"),
        amend("-o help", plain, "-o", "help", "img"),
        amend("-o ? with -f", plain, "-f", "qcow2", "-o", "?"),
        amend("-p -o help", plain, "-p", "-o", "size=1M,help", "img"),
        amend("help for raw", plain, "-f", "raw", "-o", "help"),
        amend("help for luks", plain, "-f", "luks", "-o", "help"),
        amend("help for an unknown format", plain, "-f", "foo", "-o", "help"),
        amend("probed raw image", [S.raw("r.raw", bytes: 1000)], "-o", "size=2M", "r.raw"),
        amend("qcow2 opened as raw", plain, "-f", "raw", "-o", "size=1M", "img"),
    ]

    /// Persistent bitmaps, one recording writes and one disabled, each
    /// with bits set; QEMU 7.2 stores them anew when amend closes the image.
    static func bitmaps(_ options: String) -> [[String]] {
        [S.qcow2("img", "64M", options), S.io("img", "write -P 1 0 1M", "write -z 4M 1M"),
         ["qemu-img", "bitmap", "--add", "img", "b0"], ["qemu-img", "bitmap", "--add", "-g", "4096", "img", "b1"],
         S.io("img", "write -P 2 8M 100k", "discard 4M 64k"),
         ["qemu-img", "bitmap", "--disable", "img", "b1"], S.io("img", "write -P 3 30M 64k")]
    }
    /// A bitmap left in use by a killed writer.
    static let inUseBitmap = [S.qcow2("img", "64M"), ["qemu-img", "bitmap", "--add", "img", "b0"],
                              ["sh", "-c", "qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'sigraise 9' img 2>/dev/null; true"]]

    static let withBitmaps: [ImageVerbCase] = [
        amend("bitmaps: refcount_bits=8", bitmaps(""), "-o", "refcount_bits=8", "img"),
        amend("bitmaps: refcount_bits=64", bitmaps(""), "-o", "refcount_bits=64", "img"),
        amend("bitmaps: refcount_bits=1", bitmaps(""), "-o", "refcount_bits=1", "img"),
        amend("bitmaps: refcount_bits=4, 512-byte clusters", bitmaps("cluster_size=512"), "-o", "refcount_bits=4", "img"),
        amend("bitmaps: lazy_refcounts=on", bitmaps(""), "-o", "lazy_refcounts=on", "img"),
        amend("bitmaps: lazy_refcounts=off", bitmaps("lazy_refcounts=on"), "-o", "lazy_refcounts=off", "img"),
        amend("bitmaps: grow", bitmaps(""), "-o", "size=1G", "img"),
        amend("bitmaps: shrink", bitmaps(""), "-o", "size=16M", "img"),
        amend("bitmaps: compat=1.1 (no change)", bitmaps(""), "-o", "compat=1.1", "img"),
        // QEMU 7.2 does not refuse: it drops the autoclear bit and leaks the
        // bitmaps' clusters (qemu-img check: 3 leaked clusters, exit 3).
        amend("bitmaps: downgrade leaks their clusters, as QEMU's", bitmaps(""), "-o", "compat=0.10", "img",
              checkAsQemu: true),
        amend("bitmaps: -p refcount_bits=8 and grow", bitmaps(""), "-p", "-o", "refcount_bits=8,size=128M", "img"),
        amend("bitmaps: one in use, refcount_bits=8", inUseBitmap, "-o", "refcount_bits=8", "img"),
        amend("bitmaps: with a snapshot, refcount_bits=8",
              bitmaps("") + [["qemu-img", "snapshot", "-c", "s1", "img"]], "-o", "refcount_bits=8", "img"),
    ]

    static let all = refcountWidths + versions + others + refusals + withBitmaps
}

@Suite
struct AmendInteropTests {
    @Test(arguments: AmendInteropCatalog.all)
    func sameAsQemuImg(_ testCase: ImageVerbCase) throws {
        try ImageVerbOracle.run(testCase)
    }
}
