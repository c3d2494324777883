// Images for the check interop tests: clean ones of every layout qemu-img
// makes, and damaged ones, each made by qemu-img / qemu-io and then poked
// with `CheckImageEditor`. Small (a few MiB) so the suite stays fast.
import Foundation
import Testing

/// A clean image: how to make it in a scratch directory (as "base.qcow2").
struct CheckBase: Sendable, CustomTestStringConvertible {
    var name: String
    var make: @Sendable (CheckScratch) throws -> Void
    var testDescription: String { name }

    /// Data, compressed data, zeroes and a short write, with `options`.
    /// Compressed writes are whole clusters (2 MiB ones at 8 MiB), and
    /// impossible on preallocated images.
    static func standard(_ options: String = "", size: String = "32M") -> CheckBase {
        CheckBase(name: options.isEmpty ? "default" : options) { dir in
            var arguments = ["create", "-q", "-f", "qcow2"]
            if !options.isEmpty { arguments += ["-o", options] }
            try CheckProcess.run(["qemu-img"] + arguments + ["base.qcow2", size], in: dir.url)
            var writes = ["write -P 1 0 100k", "write -z 2M 64k", "write -P 3 5M 1k"]
            if options.contains("cluster_size=2M") {
                writes.append("write -c -P 2 8M 2M")
            } else if !options.contains("preallocation") {
                writes.append("write -c -P 2 1M 128k")
            }
            try dir.io("base.qcow2", writes)
        }
    }

    /// Two internal snapshots with data shared and not.
    static let snapshots = CheckBase(name: "snapshots") { dir in
        try dir.img("create", "-q", "-f", "qcow2", "base.qcow2", "32M")
        try dir.io("base.qcow2", ["write -P 1 0 100k"])
        try dir.img("snapshot", "-c", "s1", "base.qcow2")
        try dir.io("base.qcow2", ["write -P 2 0 64k", "write -P 3 4M 64k"])
        try dir.img("snapshot", "-c", "s2", "base.qcow2")
        try dir.io("base.qcow2", ["write -P 5 8M 64k"])
    }

    /// Compressed clusters whose data crosses host cluster boundaries.
    static let compressedSpanning = CheckBase(name: "compressed, spanning clusters") { dir in
        // Text compresses to roughly 3/4: each compressed cluster then
        // straddles two host clusters.
        var text = Data()
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for _ in 0..<(1 << 20) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            text.append(alphabet[Int(state >> 58)])
        }
        try text.write(to: dir.url.appendingPathComponent("text.raw"))
        try dir.img("convert", "-c", "-f", "raw", "-O", "qcow2", "text.raw", "base.qcow2")
    }

    /// 512-byte clusters and enough data for many refcount blocks.
    static let manyRefcountBlocks = CheckBase(name: "512-byte clusters, many refcount blocks") { dir in
        try dir.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "base.qcow2", "8M")
        try dir.io("base.qcow2", ["write -P 1 0 2M"])
    }

    /// 4 KiB clusters and 10 MiB of data: two refcount blocks, the second
    /// one at refcount table index 1.
    static let twoRefcountBlocks = CheckBase(name: "4 KiB clusters, two refcount blocks") { dir in
        try dir.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "base.qcow2", "32M")
        try dir.io("base.qcow2", ["write -P 1 0 10M"])
    }

    /// One snapshot (a 255-byte name: its table entry fills most of a
    /// 512-byte cluster) and a refcount table whose one cluster covers
    /// every cluster but none past the end of the file: the next cluster
    /// allocated needs a new refcount block, and the table must grow.
    static let fullRefcountTable = CheckBase(name: "one snapshot, refcount table full") { dir in
        try dir.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", "base.qcow2", "4M")
        try dir.io("base.qcow2", ["write -P 1 0 2029056"])
        try dir.img("snapshot", "-c", String(repeating: "a", count: 255), "base.qcow2")
    }

    /// Lazy refcounts, and qemu-io aborted after writing: dirty, stale refcounts.
    static let crashedLazyRefcounts = CheckBase(name: "lazy refcounts, crashed") { dir in
        try dir.img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "base.qcow2", "64M")
        // abort kills qemu-io, as a crash would.
        _ = try CheckProcess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 1 0 1M", "-c", "write -P 2 4M 64k",
                                  "-c", "abort", "base.qcow2"], in: dir.url, check: false)
    }
}

/// A damaged image: a base, then pokes.
struct CheckDamage: Sendable, CustomTestStringConvertible {
    var name: String
    var base: CheckBase
    var damage: @Sendable (CheckImageEditor) throws -> Void
    var testDescription: String { name }

    init(_ name: String, _ base: CheckBase = .standard(), _ damage: @escaping @Sendable (CheckImageEditor) throws -> Void) {
        self.name = name
        self.base = base
        self.damage = damage
    }

    /// Makes the damaged image as "damaged.qcow2".
    func make(_ dir: CheckScratch) throws {
        try base.make(dir)
        try dir.copy("base.qcow2", to: "damaged.qcow2")
        let editor = try CheckImageEditor(dir.path("damaged.qcow2"))
        try damage(editor)
    }
}

/// The standard image's layout (64 KiB clusters): header, refcount table,
/// refcount block, L1 table, L2 table (cluster 4), data from cluster 5;
/// L2 entries 0-1 data, 16-17 compressed, 32 zero, 80 the short write.
enum CheckDamages {
    static let copied: UInt64 = 1 << 63
    static let compressed: UInt64 = 1 << 62
    static let offsetMask = CheckImageEditor.offsetMask

    static let all: [CheckDamage] = refcounts + entries + structure + snapshots + flags + widths + layouts

    static let refcounts: [CheckDamage] = [
        CheckDamage("leaked data cluster") { try $0.setL2(0, 1, 0) },
        CheckDamage("refcount too high") { try $0.setRefcount(3, 2) },
        CheckDamage("refcount zero for data (rebuild)") { try $0.setRefcount(5, 0) },
        CheckDamage("refcount zero for the L2 table") { try $0.setRefcount(4, 0) },
        CheckDamage("refcount too low and too high") {
            try $0.setRefcount(5, 0)
            try $0.setRefcount(6, 3)
        },
        CheckDamage("cluster referenced twice") { try $0.setL2(0, 1, $0.l2(0, 0)) },
    ]

    static let entries: [CheckDamage] = [
        CheckDamage("L2 entry past the end of the file") { try $0.setL2(0, 1, copied | 0x1000_0000) },
        CheckDamage("L2 entry not cluster aligned") { try $0.setL2(0, 1, $0.l2(0, 1) + 0x1000) },
        CheckDamage("preallocated L2 entry not aligned") { try $0.setL2(0, 1, ($0.l2(0, 1) + 0x1000) | 1) },
        CheckDamage("L2 table not cluster aligned") { try $0.setL1(0, $0.l1(0) + 0x1000) },
        CheckDamage("L2 table past the end of the file") { try $0.setL1(0, copied | 0x100_0000) },
        CheckDamage("L1 entry reserved bits") { try $0.setL1(0, $0.l1(0) | 2) },
        CheckDamage("L2 entry reserved bits") { try $0.setL2(0, 0, $0.l2(0, 0) | 4) },
        CheckDamage("copied flag on a compressed cluster") { try $0.setL2(0, 16, $0.l2(0, 16) | copied) },
        CheckDamage("compressed data past the end of the file") {
            let entry = try $0.l2(0, 16)
            try $0.setL2(0, 16, (entry & ~((1 << 54) - 1)) | 0x1000_0000)
        },
        CheckDamage("copied flag missing") { try $0.setL2(0, 0, $0.l2(0, 0) & ~copied) },
        CheckDamage("L2 table is the L1 table") { try $0.setL1(0, copied | $0.l1Offset) },
    ]

    static let structure: [CheckDamage] = [
        CheckDamage("refcount table entry reserved bits") {
            try $0.setU64($0.refcountTableOffset, $0.u64($0.refcountTableOffset) | 1)
        },
        CheckDamage("refcount block not aligned") {
            try $0.setU64($0.refcountTableOffset, $0.u64($0.refcountTableOffset) + 0x1000)
        },
        // QEMU names the table index "%#x": "0" above, "0x1" here.
        CheckDamage("refcount block 1 not aligned", .twoRefcountBlocks) {
            try $0.setU64($0.refcountTableOffset + 8, $0.u64($0.refcountTableOffset + 8) + 0x200)
        },
        CheckDamage("refcount block past the end of the file") { try $0.setU64($0.refcountTableOffset, 0x100_0000) },
        CheckDamage("refcount block also a data cluster") {
            try $0.setL2(0, 1, copied | $0.u64($0.refcountTableOffset))
        },
        CheckDamage("refcount table without blocks") { try $0.setU64($0.refcountTableOffset, 0) },
        CheckDamage("no refcount table at all") { try $0.setU32(56, 0) },
    ]

    static let snapshots: [CheckDamage] = [
        CheckDamage("snapshot: shared cluster refcount too low", .snapshots) { try $0.setRefcount(6, 2) },
        CheckDamage("snapshot: copied flag on a shared cluster", .snapshots) { try $0.setL2(0, 0, $0.l2(0, 0) | copied) },
        CheckDamage("snapshot: L1 table not aligned", .snapshots) {
            let entry = try $0.snapshotEntryOffsets()[0]
            try $0.setU64(entry, $0.u64(entry) + 0x200)
        },
        CheckDamage("snapshot: L1 table too large", .snapshots) {
            try $0.setU32($0.snapshotEntryOffsets()[1] + 8, 0x80_0000)
        },
        CheckDamage("snapshot: L1 table past the end of the file", .snapshots) {
            try $0.setU64($0.snapshotEntryOffsets()[1], 0x1_0000_0000)
        },
        CheckDamage("snapshot: too many snapshots", .snapshots) { try $0.setU32(60, 70000) },
        CheckDamage("snapshot: one more entry than exists", .snapshots) { try $0.setU32(60, 3) },
        CheckDamage("snapshot: too much extra data", .snapshots) {
            try $0.setU32($0.snapshotEntryOffsets()[0] + 36, 2000)
        },
        CheckDamage("snapshot: table not aligned", .snapshots) { try $0.setU64(64, $0.snapshotsOffset + 8) },
        // -r all writes the table again: its new clusters need a refcount
        // block past the refcount table, which grows (and the header with it).
        CheckDamage("snapshot: entry incomplete, refcount table full", .fullRefcountTable) {
            try $0.setU32($0.snapshotEntryOffsets()[0] + 36, 8)
        },
    ]

    static let flags: [CheckDamage] = [
        CheckDamage("dirty bit, no errors") { try $0.write(79, [1]) },
        CheckDamage("dirty bit and a leak") {
            try $0.write(79, [1])
            try $0.setL2(0, 1, 0)
        },
        CheckDamage("corrupt bit and a leak") {
            try $0.write(79, [2])
            try $0.setL2(0, 1, 0)
        },
        CheckDamage("corrupt and dirty bits, refcount zero") {
            try $0.write(79, [3])
            try $0.setRefcount(5, 0)
        },
        CheckDamage("corrupt bit, cluster referenced twice") {
            try $0.write(79, [2])
            try $0.setL2(0, 1, $0.l2(0, 0))
        },
        CheckDamage("unknown autoclear bit and a leak") {
            try $0.write(88, [0x80])
            try $0.setL2(0, 1, 0)
        },
        CheckDamage("crashed with lazy refcounts", .crashedLazyRefcounts) { _ in },
    ]

    static let widths: [CheckDamage] = [1, 2, 4, 8, 32, 64].flatMap { bits -> [CheckDamage] in
        let base = CheckBase.standard("refcount_bits=\(bits)")
        return [
            CheckDamage("\(bits)-bit refcounts: leak", base) { try $0.setL2(0, 1, 0) },
            CheckDamage("\(bits)-bit refcounts: referenced twice", base) { try $0.setL2(0, 1, $0.l2(0, 0)) },
            CheckDamage("\(bits)-bit refcounts: refcount zero", base) { try $0.setRefcount(5, 0) },
        ]
    }

    static let layouts: [CheckDamage] = [
        CheckDamage("compat=0.10: leak", .standard("compat=0.10")) { try $0.setRefcount(5, 2) },
        CheckDamage("compat=0.10: zero flag", .standard("compat=0.10")) { try $0.setL2(0, 0, $0.l2(0, 0) | 1) },
        CheckDamage("compat=0.10: L2 table is the L1 table", .standard("compat=0.10")) {
            try $0.setL1(0, copied | $0.l1Offset)
        },
        CheckDamage("extended L2: allocated and zero", .standard("extended_l2=on")) {
            try $0.setL2Bitmap(0, 0, 0x1_0000_0001)
        },
        CheckDamage("extended L2: unallocated with bitmap", .standard("extended_l2=on")) {
            try $0.setL2Bitmap(0, 40, 3)
        },
        CheckDamage("extended L2: compressed with bitmap", .standard("extended_l2=on")) {
            try $0.setL2Bitmap(0, 16, 1)
        },
        CheckDamage("extended L2: zero cluster not aligned", .standard("extended_l2=on")) {
            try $0.setL2(0, 0, $0.l2(0, 0) + 0x1000)
            try $0.setL2Bitmap(0, 0, 0xffff_ffff_0000_0000)
        },
        CheckDamage("4 KiB clusters: preallocated entry not aligned", .standard("cluster_size=4096")) {
            try $0.setL2(0, 1, ($0.l2(0, 1) + 0x200) | 1)
        },
        CheckDamage("2 MiB clusters: refcount zero", .standard("cluster_size=2M")) { try $0.setRefcount(3, 0) },
        // Findings inside a few of many refcount blocks: the blocks around
        // them match the counts and are compared whole (RefcountComparison).
        CheckDamage("many refcount blocks: a leak and a copied flag among matching blocks", .manyRefcountBlocks) {
            try $0.setRefcount(2000, 2)
            try $0.setL2(40, 3, $0.l2(40, 3) & ~copied)
        },
        CheckDamage("compressed across clusters: refcount low", .compressedSpanning) {
            let entry = try $0.l2(0, 1)
            let offset = entry & ((1 << 54) - 1)
            try $0.setRefcount((offset >> 16) + 1, 1)
        },
        CheckDamage("compressed across clusters: leaked", .compressedSpanning) {
            try $0.setL2(0, 1, 0)
            try $0.setL2(0, 2, 0)
        },
        CheckDamage("many refcount blocks: leaks", .manyRefcountBlocks) { editor in
            for l1 in stride(from: 0, to: 64, by: 2) {
                for entry in stride(from: 0, to: 64, by: 7) { try editor.setL2(l1, entry, 0) }
            }
        },
        CheckDamage("many refcount blocks: leaks, then the image breaks", .manyRefcountBlocks) { editor in
            for l1 in stride(from: 0, to: 64, by: 2) {
                for entry in stride(from: 0, to: 64, by: 7) { try editor.setL2(l1, entry, 0) }
            }
            try editor.setL1(70, copied | editor.l1Offset)
        },
    ]
}
