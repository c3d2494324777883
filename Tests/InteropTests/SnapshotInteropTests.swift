// `qcowkit snapshot` against `qemu-img snapshot` (QEMU 7.2): the same
// create/apply/delete sequences, with guest writes between them (qemu-io on
// QEMU's copy, `qcowkit io` on ours), on copies of the same images. After
// every step: the same output and exit status, byte-identical images apart
// from the snapshot dates, and the same data and hole extents in the file (every
// refcount width: where a snapshot would pass a width's maximum, QEMU 7.2 fails
// the create and leaks what it had raised, and so must we). At the end QEMU reads our image: `qemu-img
// check` finds it clean, `qemu-img snapshot -l` lists what it lists on
// QEMU's, qemu-io reads the same bytes, and every snapshot applied by
// qemu-img gives the same content on both.
import Foundation
import Testing
import TestSupport

@Suite("qcowkit snapshot against qemu-img 7.2", .serialized)
struct SnapshotInteropTests {
    enum Step {
        /// `snapshot ARGS image.qcow2` with each tool.
        case snapshot([String])
        /// qemu-io / `qcowkit io` with these -c commands.
        case io([String])
    }

    struct Fixture: CustomTestStringConvertible, Sendable {
        var name: String
        /// `qemu-img create` options, and the first writes.
        var createOptions: String
        var setup: [String]
        var backing = false
        /// QEMU's own image fails `qemu-img check` at the end (a failure it
        /// reproduces): ours must fail it alike.
        var qemuLeavesErrors = false
        var testDescription: String { name }
    }

    static let fixtures: [Fixture] = [
        Fixture(name: "compat 1.1, 64 KiB clusters", createOptions: "cluster_size=65536",
                setup: ["write -P 1 0 128k", "write -z 512k 64k", "write -c -P 3 2M 64k", "write -P 4 1M 64k"]),
        Fixture(name: "compat 0.10", createOptions: "compat=0.10",
                setup: ["write -P 1 0 128k", "write -c -P 3 2M 64k", "write -P 4 1M 64k"]),
        Fixture(name: "4 KiB clusters, 8-bit refcounts (many L2 tables)",
                createOptions: "cluster_size=4096,refcount_bits=8",
                setup: ["write -P 1 0 128k", "write -c -P 3 2M 64k", "write -P 4 1M 64k", "write -P 9 40M 8k"]),
        // Refcount widths whose maximum a snapshot can pass: QEMU 7.2 refuses
        // the create with EINVAL after it has raised some refcounts, and
        // leaves those leaked (its image fails `qemu-img check` with exit 3
        // or 2); ours must be byte-identical at every step all the same.
        Fixture(name: "1-bit refcounts: no snapshot can be taken", createOptions: "refcount_bits=1",
                setup: ["write -P 1 0 128k", "write -P 4 1M 64k"], qemuLeavesErrors: true),
        Fixture(name: "2-bit refcounts: the fourth reference is refused", createOptions: "refcount_bits=2",
                setup: ["write -P 1 0 128k", "write -P 4 1M 64k"], qemuLeavesErrors: true),
        Fixture(name: "4-bit refcounts, 4 KiB clusters", createOptions: "refcount_bits=4,cluster_size=4096",
                setup: ["write -P 1 0 128k", "write -z 512k 64k", "write -P 4 1M 64k"]),
        Fixture(name: "4-bit refcounts: compressed clusters sharing a host cluster pass 15 references",
                createOptions: "refcount_bits=4,cluster_size=4096",
                setup: ["write -P 1 0 128k", "write -c -P 3 2M 64k"], qemuLeavesErrors: true),
        Fixture(name: "32-bit refcounts", createOptions: "refcount_bits=32",
                setup: ["write -P 1 0 128k", "write -z 512k 64k", "write -P 4 1M 64k"]),
        Fixture(name: "64-bit refcounts, 512-byte clusters", createOptions: "refcount_bits=64,cluster_size=512",
                setup: ["write -P 1 0 128k", "write -c -P 3 2M 64k", "write -P 4 1M 64k"]),
        Fixture(name: "extended L2 entries, 128 KiB clusters", createOptions: "cluster_size=131072,extended_l2=on",
                setup: ["write -P 1 0 128k", "write -z 512k 4k", "write -c -P 3 2M 128k", "write -P 4 1M 4k"]),
        Fixture(name: "lazy refcounts", createOptions: "lazy_refcounts=on",
                setup: ["write -P 1 0 128k", "write -P 4 1M 64k"]),
        Fixture(name: "overlay on a backing file", createOptions: "backing_file=base.qcow2,backing_fmt=qcow2",
                setup: ["write -P 1 0 4k", "write -P 4 1M 64k"], backing: true),
    ]

    /// Creates, writes between, applies by name and by ID, deletes (one of
    /// two snapshots of the same name), and the failures in between.
    static let sequence: [Step] = [
        .snapshot(["-l"]),
        .snapshot(["-c", "s1"]),
        .io(["write -P 5 64k 128k", "discard 1M 64k"]),
        .snapshot(["-c", "s2"]),
        .snapshot(["-c", "s1"]),
        .snapshot(["-l"]),
        .io(["write -P 6 3M 4k", "write -P 7 10M 64k"]),
        .snapshot(["-a", "s1"]),
        .io(["read -P 1 0 64k", "read -P 4 1M 64k", "read -P 0 10M 64k"]),
        .io(["write -P 8 0 4k"]),
        .snapshot(["-a", "2"]),
        .io(["read -P 5 64k 128k", "read -P 0 1M 64k"]),
        .snapshot(["-d", "s2"]),
        .snapshot(["-d", "nope"]),
        .snapshot(["-a", "nope"]),
        .snapshot(["-d", "s1"]),
        .snapshot(["-l"]),
        .io(["write -P 10 12M 128k"]),
        .snapshot(["-c", "s4"]),
        .snapshot(["-a", "s1"]),
        .io(["read -P 7 10M 64k"]),
        .snapshot(["-d", "s1"]),
        .snapshot(["-l"]),
    ]

    @Test("create, apply and delete sequences leave images byte-identical to qemu-img's", arguments: fixtures)
    func sequences(_ fixture: Fixture) throws {
        let twins = try IOTwinDirectories()
        var prepare: [[String]] = []
        if fixture.backing {
            prepare.append(["qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "64M"])
            prepare.append(["qemu-io", "-c", "write -P 11 0 2M", "base.qcow2"])
        }
        prepare.append(["qemu-img", "create", "-q", "-f", "qcow2", "-o", fixture.createOptions, "image.qcow2", "64M"])
        prepare.append(["qemu-io"] + fixture.setup.flatMap { ["-c", $0] } + ["image.qcow2"])
        try twins.prepare(prepare)

        for (index, step) in Self.sequence.enumerated() {
            let (theirs, ours): (IOProcessResult, IOProcessResult)
            switch step {
            case let .snapshot(arguments):
                (theirs, ours) = try twins.snapshot(arguments + ["image.qcow2"])
            case let .io(commands):
                let arguments = commands.flatMap { ["-c", $0] } + ["image.qcow2"]
                (theirs, ours) = try twins.run(arguments)
            }
            let context = Comment(rawValue: "step \(index): \(step)")
            SnapshotInterop.expectSame((theirs, ours), context)
            let difference = try twins.difference("image.qcow2")
            #expect(difference == nil, context)
            // The same holes in the file: freed clusters discarded alike.
            let extents = try twins.maps("image.qcow2", format: "raw")
            #expect(extents.ours == extents.qemu, context)
            if difference != nil { return }
        }
        try expectQemuReadsOurs(twins, qemuLeavesErrors: fixture.qemuLeavesErrors)
    }

    /// QEMU's own tools on our image: clean, the same listing, the same
    /// content now and in every snapshot (applied by qemu-img on copies).
    func expectQemuReadsOurs(_ twins: IOTwinDirectories, qemuLeavesErrors: Bool = false) throws {
        let check = try IOProcess.run(["qemu-img", "check", "image.qcow2"], in: twins.ours)
        let expected = qemuLeavesErrors ? try IOProcess.run(["qemu-img", "check", "image.qcow2"], in: twins.qemu) : nil
        #expect(check.status == expected?.status ?? 0, "qemu-img check: \(check.output)\(check.error)")
        #expect(expected?.status != 0, "QEMU's image is clean: qemuLeavesErrors is not needed")
        let list = { (dir: URL) in try IOProcess.run(["qemu-img", "snapshot", "-l", "image.qcow2"], in: dir) }
        let (theirList, ourList) = (try list(twins.qemu), try list(twins.ours))
        #expect(ourList.status == 0)
        #expect(SnapshotInterop.normalised(ourList.output) == SnapshotInterop.normalised(theirList.output))
        #expect(try twins.sameContent("image.qcow2"))

        let ids = ourList.output.split(separator: "\n").dropFirst(2).compactMap { $0.split(separator: " ").first }
        for id in ids {
            for dir in [twins.qemu, twins.ours] {
                _ = try IOProcess.run(["cp", "image.qcow2", "applied-\(id).qcow2"], in: dir)
                let apply = try IOProcess.run(["qemu-img", "snapshot", "-a", String(id), "applied-\(id).qcow2"], in: dir)
                #expect(apply.status == 0, "qemu-img snapshot -a \(id): \(apply.error)")
            }
            #expect(try twins.sameContent("applied-\(id).qcow2"), "snapshot \(id)")
        }
    }

    @Test("refusals and failures: the same messages and exit status as qemu-img")
    func refusals() throws {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "image.qcow2", "1M"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", "narrow.qcow2", "1M"],
            ["qemu-io", "-c", "write 0 64k", "narrow.qcow2"],
            ["qemu-img", "create", "-q", "-f", "raw", "disk.raw", "1M"],
        ])
        let cases: [[String]] = [
            ["-l", "-c", "x", "image.qcow2"],
            ["-x", "image.qcow2"],
            ["-c"],
            ["-c", "x", "-d", "y", "image.qcow2"],
            ["-c", "x", "-c", "y", "image.qcow2"],
            ["-l"],
            ["-l", "image.qcow2", "other.qcow2"],
            ["image.qcow2"],
            ["-l", "missing.qcow2"],
            ["-a", "none", "image.qcow2"],
            ["-d", "none", "image.qcow2"],
            ["-q", "-c", "quiet", "image.qcow2"],
            ["-U", "-l", "image.qcow2"],
            ["-d", "1", "image.qcow2"],  // delete goes by name only
            ["-c", "a", "narrow.qcow2"],  // 1-bit refcounts cannot count a second reference
            ["-l", "disk.raw"],
            ["-c", "s", "disk.raw"],
            ["-a", "s", "disk.raw"],
            ["-d", "s", "disk.raw"],
        ]
        for arguments in cases {
            let context = Comment(rawValue: "snapshot \(arguments.joined(separator: " "))")
            SnapshotInterop.expectSame(try twins.snapshot(arguments), context)
            for name in ["image.qcow2", "narrow.qcow2"] { #expect(try twins.difference(name) == nil, context) }
        }
    }

    @Test("apply resizes the image to a snapshot's disk size, larger or smaller, as qemu-img does")
    func diskSizes() throws {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "image.qcow2", "64M"],
            ["qemu-io", "-c", "write -P 1 0 64k", "image.qcow2"],
            ["qemu-img", "snapshot", "-c", "small", "image.qcow2"],
            ["qemu-img", "resize", "-q", "image.qcow2", "128M"],
            ["qemu-io", "-c", "write -P 2 100M 64k", "image.qcow2"],
            ["qemu-img", "snapshot", "-c", "big", "image.qcow2"],
            ["qemu-img", "resize", "-q", "--shrink", "image.qcow2", "64M"],
        ])
        let qcowkit = try TestTools.qcowkit()
        let qemuImage = twins.qemu.appendingPathComponent("image.qcow2").path
        let ourImage = twins.ours.appendingPathComponent("image.qcow2").path
        let theirs = try IOProcess.run(["qemu-img", "snapshot", "-a", "big", "image.qcow2"], in: twins.qemu)
        let ours = try IOProcess.run([qcowkit, "snapshot", "-a", "big", "image.qcow2"], in: twins.ours)
        #expect(theirs.status == 0 && ours.status == 0 && ours.error.isEmpty)
        #expect(try SnapshotInterop.firstDifference(qemuImage, ourImage) == nil)

        // Back to "small": the image shrinks to 64 MiB, as in QEMU.
        let theirsSmall = try IOProcess.run(["qemu-img", "snapshot", "-a", "small", "image.qcow2"], in: twins.qemu)
        let oursSmall = try IOProcess.run([qcowkit, "snapshot", "-a", "small", "image.qcow2"], in: twins.ours)
        #expect(theirsSmall.status == 0 && oursSmall.status == 0 && oursSmall.error.isEmpty)
        #expect(try SnapshotInterop.firstDifference(qemuImage, ourImage) == nil)
        let check = try IOProcess.run(["qemu-img", "check", "image.qcow2"], in: twins.ours)
        #expect(check.status == 0)
    }

    @Test("QEMU 10's long spellings do what the short ones do")
    func longOptions() throws {
        let twins = try IOTwinDirectories()
        try twins.prepare([["qemu-img", "create", "-q", "-f", "qcow2", "image.qcow2", "1M"]])
        let qcowkit = try TestTools.qcowkit()
        let steps: [[String]] = [["--create", "s1"], ["--format", "qcow2", "--create", "s2"], ["--apply", "s1"],
                                 ["--delete", "s2"], ["--quiet", "--force-share", "--list"]]
        let short: [[String]] = [["-c", "s1"], ["-c", "s2"], ["-a", "s1"], ["-d", "s2"], ["-l"]]
        for (long, short) in zip(steps, short) {
            let ours = try IOProcess.run([qcowkit, "snapshot"] + long + ["image.qcow2"], in: twins.ours)
            let theirs = try IOProcess.run(["qemu-img", "snapshot"] + short + ["image.qcow2"], in: twins.qemu)
            SnapshotInterop.expectSame((theirs, ours), Comment(rawValue: long.joined(separator: " ")))
        }
        #expect(try twins.difference("image.qcow2") == nil)
    }

    @Test("a compat 0.10 image cannot be resized to apply a snapshot: QEMU's two messages")
    func versionTwoResize() throws {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "image.qcow2", "64M"],
            ["qemu-img", "snapshot", "-c", "s", "image.qcow2"],
        ])
        // The header's size made smaller than the snapshot's (a v2 image with
        // snapshots cannot be resized any other way).
        for dir in [twins.qemu, twins.ours] {
            let handle = try FileHandle(forWritingTo: dir.appendingPathComponent("image.qcow2"))
            try handle.seek(toOffset: 24)
            try handle.write(contentsOf: Data([0, 0, 0, 0, 0x02, 0, 0, 0]))
            try handle.close()
        }
        SnapshotInterop.expectSame(try twins.snapshot(["-a", "s", "image.qcow2"]))
        #expect(try twins.difference("image.qcow2") == nil)
    }

    /// Appends a snapshot table of `names` (IDs 1, 2, ...; no L1 tables;
    /// the 16 bytes of extra data v3 needs) to the file and points the
    /// header at it; the refcounts of its clusters are left to check -r.
    static func appendSnapshotTable(_ path: String, names: [Int]) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        handle.seek(toFileOffset: 24)
        let size = handle.readData(ofLength: 8)
        let offset = (handle.seekToEndOfFile() + 65535) & ~65535
        var table = [UInt8]()
        func be(_ value: UInt64, _ width: Int) { for i in (0..<width).reversed() { table.append(UInt8(truncatingIfNeeded: value >> (8 * i))) } }
        for (index, nameLength) in names.enumerated() {
            let id = Array(String(index + 1).utf8)
            be(0, 8); be(0, 4); be(UInt64(id.count), 2); be(UInt64(nameLength), 2)
            be(0, 4); be(0, 4); be(0, 8); be(0, 4); be(16, 4)
            be(0, 8); table += size
            table += id + [UInt8](repeating: UInt8(ascii: "n"), count: nameLength)
            table += [UInt8](repeating: 0, count: (8 - table.count % 8) % 8)
        }
        table += [UInt8](repeating: 0, count: (65536 - table.count % 65536) % 65536)
        handle.seek(toFileOffset: offset)
        handle.write(Data(table))
        table = []
        be(UInt64(names.count), 4); be(offset, 8)
        handle.seek(toFileOffset: 60)
        handle.write(Data(table))
    }

    @Test("QEMU's limits: a 65,537th snapshot, and a table past 64 MiB, refused as qemu-img 7.2 refuses them")
    func limits() throws {
        // 65,536 entries; then 1,118 entries of 60,000-byte names, 50 bytes
        // short of 64 MiB, so that the new entry passes it.
        var large = [Int](repeating: 60000, count: 1117)
        large.append((64 << 20) - 50 - 1117 * 60064 - 60)  // 60064: one entry, padded
        for names in [[Int](repeating: 1, count: 65536), large] {
            let twins = try IOTwinDirectories()
            try twins.prepare([["qemu-img", "create", "-q", "-f", "qcow2", "image.qcow2", "1M"]])
            try Self.appendSnapshotTable(twins.stage.appendingPathComponent("image.qcow2").path, names: names)
            try twins.prepare([["qemu-img", "check", "-q", "-r", "all", "image.qcow2"]])
            let context = Comment(rawValue: "\(names.count) snapshots")
            let runs = try twins.snapshot(["-c", "one more", "image.qcow2"])
            SnapshotInterop.expectSame(runs, context)
            #expect(runs.ours.error.hasSuffix("Could not create snapshot 'one more': -27 (File too large)\n"), context)
            #expect(try twins.difference("image.qcow2") == nil, context)
        }
    }

    @Test("a table of many snapshots with long names, over several clusters, created and thinned out")
    func largeTable() throws {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "image.qcow2", "8M"],
            ["qemu-io", "-c", "write 0 64k", "image.qcow2"],
        ])
        let long = String(repeating: "n", count: 300)  // kept to 255 bytes
        let steps = (1...20).map { ["-c", long + "\($0)"] } + [["-c", long], ["-d", String(long.prefix(255))]]
            + [3, 17, 20, 1].map { ["-d", long + "\($0)"] } + [["-l"]]
        for arguments in steps {
            let context = Comment(rawValue: "snapshot \(arguments[0]) \(arguments.dropFirst().first?.suffix(8) ?? "")")
            SnapshotInterop.expectSame(try twins.snapshot(arguments + ["image.qcow2"]), context)
            #expect(try twins.difference("image.qcow2") == nil, context)
        }
    }
}
