// `qcowkit check` against `qemu-img check` 7.2, through the built binary:
// the same standard output, standard error and exit status for clean and
// damaged images, and, after `-r leaks` / `-r all`, the same bytes.
import Foundation
import Testing

@Suite("check against qemu-img check")
struct CheckInteropTests {
    static let cleanBases: [CheckBase] =
        [1, 2, 4, 8, 16, 32, 64].map { CheckBase.standard("refcount_bits=\($0)") }
        + ["512", "4096", "2M"].map { CheckBase.standard("cluster_size=\($0)") }
        + [CheckBase.standard("cluster_size=512,refcount_bits=1"), .standard("cluster_size=2M,refcount_bits=64"),
           .standard("compat=0.10"), .standard("extended_l2=on"), .standard("extended_l2=on,cluster_size=2M"),
           .standard("compression_type=zstd"), .standard("lazy_refcounts=on"),
           .standard("preallocation=metadata"), .standard("preallocation=full", size: "8M"),
           .snapshots, .compressedSpanning]

    @Test("clean images: identical reports, human and JSON", arguments: cleanBases)
    func clean(_ base: CheckBase) throws {
        let dir = try CheckScratch()
        try base.make(dir)
        for arguments in [[], ["--output=json"]] {
            let comparison = try CheckComparison.run("base.qcow2", in: dir, arguments: arguments)
            comparison.expectIdentical("\(base.name) \(arguments)")
            #expect(comparison.ours.status == 0)
        }
    }

    @Test("damaged images: identical findings, repairs and repaired bytes", arguments: CheckDamages.all)
    func damaged(_ damage: CheckDamage) throws {
        let dir = try CheckScratch()
        try damage.make(dir)
        for arguments in [[], ["-r", "leaks"], ["-r", "all"]] {
            let comparison = try CheckComparison.run("damaged.qcow2", in: dir, arguments: arguments)
            comparison.expectIdentical("\(damage.name) \(arguments)")
        }
    }

    /// QEMU's check frees with discards passed through, at once (nothing
    /// defers them during a check): the file gets a hole where the leaked
    /// cluster was, in both.
    @Test("-r leaks punches the freed cluster out of the file at once")
    func freedClusterIsPunched() throws {
        let dir = try CheckScratch()
        try CheckDamages.refcounts[0].make(dir)   // leaked data cluster
        let base = try CheckImageEditor(dir.path("base.qcow2"))
        let leaked = try base.l2(0, 1) & CheckImageEditor.offsetMask
        let cluster = leaked..<(leaked + base.clusterSize)
        #expect(try CheckComparison.dataExtents(dir.path("damaged.qcow2")).contains { $0.overlaps(cluster) })

        let comparison = try CheckComparison.run("damaged.qcow2", in: dir, arguments: ["-r", "leaks"])
        comparison.expectIdentical("-r leaks")
        #expect(comparison.ours.status == 0)
        #expect(!comparison.ourExtents.contains { $0.overlaps(cluster) })
    }

    /// The snapshot table's new clusters need a refcount block the full
    /// refcount table has no room for: the allocator grows the table and
    /// the header follows it, as QEMU's does.
    @Test("-r all: a snapshot table rewrite that grows the refcount table")
    func snapshotTableRepairGrowsRefcountTable() throws {
        let dir = try CheckScratch()
        let damage = try #require(CheckDamages.snapshots.first { $0.base.name == CheckBase.fullRefcountTable.name })
        try damage.make(dir)
        let before = try CheckImageEditor(dir.path("damaged.qcow2")).refcountTableOffset
        let comparison = try CheckComparison.run("damaged.qcow2", in: dir, arguments: ["-r", "all"])
        comparison.expectIdentical("-r all")
        #expect(comparison.ours.status == 0)
        #expect(try CheckImageEditor(dir.path("k.img")).refcountTableOffset != before)
    }

    @Test("JSON reports of damaged images and their repairs")
    func json() throws {
        let dir = try CheckScratch()
        try CheckDamages.refcounts[4].make(dir)
        for arguments in [["--output=json"], ["--output=json", "-r", "all"], ["--output", "json", "-r", "leaks"]] {
            let comparison = try CheckComparison.run("damaged.qcow2", in: dir, arguments: arguments)
            comparison.expectIdentical("\(arguments)")
        }
        let repaired = try CheckComparison.run("damaged.qcow2", in: dir, arguments: ["--output=json", "-r", "all"])
        #expect(repaired.ours.output.contains("\"corruptions-fixed\": 1"))
        #expect(repaired.ours.output.contains("\"leaks-fixed\": 1"))
    }

    @Test("quiet: nothing on standard output, the same exit status")
    func quiet() throws {
        let dir = try CheckScratch()
        try CheckDamages.refcounts[0].make(dir)
        for arguments in [["-q"], ["-q", "-r", "leaks"], ["-q", "--output=json"]] {
            let comparison = try CheckComparison.run("damaged.qcow2", in: dir, arguments: arguments)
            comparison.expectIdentical("\(arguments)")
            #expect(comparison.ours.output.isEmpty)
        }
    }

    /// What a repair leaves must check clean with qemu-img itself, also
    /// with persistent bitmaps, which the repair stores again on close as
    /// QEMU does (compared byte for byte in BitmapInteropTests).
    @Test("repaired images pass qemu-img check")
    func repairedPassQemu() throws {
        let dir = try CheckScratch()
        try dir.img("create", "-q", "-f", "qcow2", "base.qcow2", "64M")
        try dir.io("base.qcow2", ["write -P 1 0 1M"])
        try dir.img("bitmap", "--add", "base.qcow2", "b1")
        try dir.copy("base.qcow2", to: "damaged.qcow2")
        let editor = try CheckImageEditor(dir.path("damaged.qcow2"))
        try editor.setL2(0, 3, 0)
        try editor.setRefcount(5, 0)

        for mode in ["leaks", "all"] {
            try dir.copy("damaged.qcow2", to: "ours.qcow2")
            let ours = try CheckProcess.qcowkit(["check", "-r", mode, "ours.qcow2"], in: dir.url)
            try dir.copy("damaged.qcow2", to: "theirs.qcow2")
            let theirs = try CheckProcess.qemuImg(["check", "-r", mode, "theirs.qcow2"], in: dir.url)
            #expect(ours.status == theirs.status, "-r \(mode)")
            #expect(ours.errorOutput == CheckComparison.renamed(theirs.errorOutput).replacingOccurrences(of: "theirs", with: "ours"))
        }
        // After the full repair (the last one), both check clean.
        let afterOurs = try CheckProcess.qemuImg(["check", "ours.qcow2"], in: dir.url)
        let afterTheirs = try CheckProcess.qemuImg(["check", "theirs.qcow2"], in: dir.url)
        #expect(afterOurs.status == 0 && afterTheirs.status == 0)
        #expect(afterOurs.output == afterTheirs.output)
        #expect(afterOurs.output.hasPrefix("No errors were found on the image."))
    }

    @Test("stale bitmaps: QEMU's warning on open")
    func staleBitmaps() throws {
        let dir = try CheckScratch()
        try dir.img("create", "-q", "-f", "qcow2", "base.qcow2", "64M")
        try dir.io("base.qcow2", ["write -P 1 0 1M"])
        try dir.img("bitmap", "--add", "base.qcow2", "b1")
        let editor = try CheckImageEditor(dir.path("base.qcow2"))
        try editor.setU64(88, 0)   // autoclear bits: the bitmaps are now stale
        let comparison = try CheckComparison.run("base.qcow2", in: dir, arguments: [])
        comparison.expectIdentical("stale bitmaps")
        #expect(comparison.ours.errorOutput.hasPrefix("qcowkit: warning: a program lacking bitmap support"))
    }

    @Test("command-line and open errors")
    func errors() throws {
        let dir = try CheckScratch()
        try CheckBase.standard().make(dir)
        try Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: dir.url.appendingPathComponent("disk.raw"))
        try dir.img("create", "-q", "-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2", "overlay.qcow2", "64M")
        try dir.img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "good-overlay.qcow2")

        let cases: [[String]] = [
            ["nonexistent.qcow2"], ["disk.raw"], ["-r", "all", "disk.raw"], ["-f", "raw", "base.qcow2"],
            ["-f", "qcow2", "disk.raw"], ["--output=xml", "base.qcow2"], ["-r", "some", "base.qcow2"],
            [], ["base.qcow2", "disk.raw"], ["overlay.qcow2"], ["good-overlay.qcow2"], ["-U", "base.qcow2"],
        ]
        for arguments in cases {
            let theirs = try CheckProcess.qemuImg(["check"] + arguments, in: dir.url)
            let ours = try CheckProcess.qcowkit(["check"] + arguments, in: dir.url)
            #expect(ours.status == theirs.status, "\(arguments)")
            #expect(ours.output == theirs.output, "\(arguments)")
            #expect(ours.errorOutput == CheckComparison.renamed(theirs.errorOutput), "\(arguments)")
        }
        let raw = try CheckProcess.qcowkit(["check", "disk.raw"], in: dir.url)
        #expect(raw.status == 63)
        #expect(raw.errorOutput == "qcowkit: This image format does not support checks\n")
    }
}
