// `qcowkit info` against qemu-img info 7.2 on images qemu-img and qemu-io
// made: every line and JSON member must match, apart from the host's
// allocation ("disk size" / "actual-size"), in both output forms, with and
// without --backing-chain.
import Foundation
import Testing
import TestSupport

private let outputModes: [[String]] = [[], ["--output=json"], ["--backing-chain"], ["--backing-chain", "--output", "json"]]

/// All four output modes of info on one image.
private func expectAllModesSame(_ path: String, extra: [String] = [], in directory: String? = nil,
                                sourceLocation: SourceLocation = #_sourceLocation) throws {
    for mode in outputModes {
        try InfoCompare.expectSame(extra + mode + [path], in: directory, sourceLocation: sourceLocation)
    }
}

@Suite struct InfoInteropTests {
    @Test(arguments: [
        "cluster_size=512", "cluster_size=1024", "cluster_size=4096", "cluster_size=2M",
        "refcount_bits=1", "refcount_bits=2", "refcount_bits=4", "refcount_bits=8",
        "refcount_bits=32", "refcount_bits=64",
        "compat=0.10", "compat=0.10,cluster_size=4096,refcount_bits=16",
        "compression_type=zstd", "extended_l2=on", "extended_l2=on,cluster_size=2M",
        "lazy_refcounts=on", "lazy_refcounts=on,compression_type=zstd,extended_l2=on,refcount_bits=64",
        "preallocation=metadata,cluster_size=4096",
    ])
    func qcow2CreationOptions(options: String) throws {
        let dir = try InfoScratch()
        let image = dir.file("img.qcow2")
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", options, image, "64M"])
        // Some data, so that the image is not just metadata.
        try InfoTool.must("qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 0 96k", "-c", "write -z 1M 64k", image])
        try expectAllModesSame(image)
    }

    /// Sizes with the options they need; raw files only as large as file systems allow.
    @Test(arguments: [("1", ""), ("511", ""), ("513", ""), ("1000", ""), ("1G", ""), ("1073741825", ""),
                      ("1.5T", ""), ("1099511627775", ""), ("256T", "-"), ("1E", "cluster_size=2M")])
    func oddVirtualSizes(size: String, options: String) throws {
        let dir = try InfoScratch()
        let qcow2 = dir.file("odd.qcow2")
        let createOptions = options.isEmpty || options == "-" ? [] : ["-o", options]
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2"] + createOptions + [qcow2, size])
        try expectAllModesSame(qcow2)
        if options.isEmpty {
            let raw = dir.file("odd.raw")
            try InfoTool.must("qemu-img", ["create", "-q", "-f", "raw", raw, size])
            try expectAllModesSame(raw)
            try expectAllModesSame(raw, extra: ["-f", "raw"])
        }
    }

    @Test func rawFilesOfAnySize() throws {
        let dir = try InfoScratch()
        for (name, size) in [("empty", 0), ("tiny", 1), ("sector", 512), ("odd", 1000), ("big", 5_000_000)] {
            let path = dir.file(name)
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: UInt64(size))
            try handle.close()
            try expectAllModesSame(path)
        }
        // Data in a raw file, some of it past a hole.
        let data = dir.file("data.raw")
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "raw", data, "10M"])
        try InfoTool.must("qemu-io", ["-f", "raw", "-c", "write -P 7 4M 1M", data])
        try expectAllModesSame(data)
    }

    @Test(arguments: [1, 3])
    func internalSnapshots(count: Int) throws {
        let dir = try InfoScratch()
        for compat in ["1.1", "0.10"] {
            let image = dir.file("snap-\(compat).qcow2")
            try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "compat=\(compat)", image, "128M"])
            let names = ["first", "second snapshot with a longer name than the column", "ünïcode-≠"]
            for i in 0..<count {
                try InfoTool.must("qemu-io", ["-f", "qcow2", "-c", "write -P \(i + 1) \(i)M 64k", image])
                try InfoTool.must("qemu-img", ["snapshot", "-c", names[i], image])
            }
            try expectAllModesSame(image)
        }
    }

    @Test func snapshotsOfAGrownImageAndAfterDeletion() throws {
        let dir = try InfoScratch()
        let image = dir.file("grow.qcow2")
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", image, "1M"])
        try InfoTool.must("qemu-img", ["snapshot", "-c", "small", image])
        try InfoTool.must("qemu-img", ["resize", "-q", image, "3G"])
        try InfoTool.must("qemu-img", ["snapshot", "-c", "big", image])
        try InfoTool.must("qemu-img", ["snapshot", "-c", "gone", image])
        try InfoTool.must("qemu-img", ["snapshot", "-d", "gone", image])
        try expectAllModesSame(image)
    }

    @Test(arguments: [1, 2, 3])
    func backingChainsWithRelativeNames(depth: Int) throws {
        let dir = try InfoScratch()
        try FileManager.default.createDirectory(atPath: dir.file("sub"), withIntermediateDirectories: true)
        // base in sub/, overlays named relative to their own directory.
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", dir.file("sub/l0.qcow2"), "32M"])
        try InfoTool.must("qemu-io", ["-f", "qcow2", "-c", "write -P 1 0 64k", dir.file("sub/l0.qcow2")])
        var previous = "l0.qcow2"
        for level in 1...depth {
            let name = "sub/l\(level).qcow2"
            try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-b", previous, "-F", "qcow2", dir.file(name)])
            previous = "l\(level).qcow2"
        }
        let top = "sub/l\(depth).qcow2"
        try expectAllModesSame(dir.file(top))
        // With a relative top name the resolved names differ from the stored
        // ones ("actual path"): run the binary from the scratch directory.
        try expectBinaryMatches(top, in: dir.path)
    }

    @Test func backingChainsWithAbsoluteNamesAndRawBase() throws {
        let dir = try InfoScratch()
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "raw", dir.file("base.raw"), "16M"])
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-b", dir.file("base.raw"), "-F", "raw", dir.file("mid.qcow2")])
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "cluster_size=4096",
                                       "-b", dir.file("mid.qcow2"), "-F", "qcow2", dir.file("top.qcow2"), "20M"])
        try expectAllModesSame(dir.file("top.qcow2"))
        try expectAllModesSame(dir.file("mid.qcow2"))
        try expectBinaryMatches("top.qcow2", in: dir.path)
    }

    @Test func backingWithoutFormatIsProbed() throws {
        let dir = try InfoScratch()
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", dir.file("base.qcow2"), "8M"])
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "raw", dir.file("base.raw"), "8M"])
        for (base, format) in [("base.qcow2", "qcow2"), ("base.raw", "raw")] {
            let top = "top-\(base).qcow2"
            try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", format, dir.file(top)])
            // Rename the backing format extension (0xe2792aca) to an unknown
            // type, which QEMU keeps but ignores: the backing has no format.
            let header = try Data(contentsOf: URL(fileURLWithPath: dir.file(top)))
            let magic = Data([0xE2, 0x79, 0x2A, 0xCA])
            let at = try #require(header.range(of: magic)?.lowerBound)
            try dir.patch(top, at: UInt64(at), [0x12, 0x34, 0x56, 0x78])
            try expectAllModesSame(dir.file(top))
        }
    }

    @Test func brokenChainsFailAsQemuImgDoes() throws {
        let dir = try InfoScratch()
        // A missing backing file: fine alone, an error for the chain.
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2",
                                       dir.file("orphan.qcow2"), "1M"])
        try expectAllModesSame(dir.file("orphan.qcow2"))
        // A loop of two, and an image that is its own backing file.
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", dir.file("l1.qcow2"), "1M"])
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-b", "l1.qcow2", "-F", "qcow2", dir.file("l2.qcow2")])
        try InfoTool.must("qemu-img", ["rebase", "-u", "-b", "l2.qcow2", "-F", "qcow2", dir.file("l1.qcow2")])
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", dir.file("self.qcow2"), "1M"])
        try InfoTool.must("qemu-img", ["rebase", "-u", "-b", "self.qcow2", "-F", "qcow2", dir.file("self.qcow2")])
        for image in ["l1.qcow2", "self.qcow2"] {
            try expectAllModesSame(dir.file(image))
            try expectBinaryMatches(image, in: dir.path)
        }
        // A backing format qemu-img does not know.
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", dir.file("weird.qcow2"), "1M"])
        try InfoTool.must("qemu-img", ["rebase", "-u", "-b", "l1.qcow2", "-F", "qcow2", dir.file("weird.qcow2")])
        let header = try Data(contentsOf: URL(fileURLWithPath: dir.file("weird.qcow2")))
        let at = try #require(header.range(of: Data("qcow2".utf8), in: 112..<4096)?.lowerBound)
        try dir.patch("weird.qcow2", at: UInt64(at), Array("qcowX".utf8))
        try expectAllModesSame(dir.file("weird.qcow2"))
    }

    @Test func persistentBitmaps() throws {
        let dir = try InfoScratch()
        let image = dir.file("bitmaps.qcow2")
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", image, "1537G"])
        try InfoTool.must("qemu-img", ["bitmap", "--add", image, "bm1"])
        try InfoTool.must("qemu-img", ["bitmap", "--add", "-g", "1M", "--disable", image, "bm2"])
        try InfoTool.must("qemu-img", ["bitmap", "--add", "-g", "512", image, "a much longer bitmap name"])
        try expectAllModesSame(image)
        // Without the autoclear bit the bitmaps are ignored, with a warning.
        try dir.patch("bitmaps.qcow2", at: 95, [0])
        try expectAllModesSame(image)
    }

    @Test func dirtyAndCorruptFlags() throws {
        let dir = try InfoScratch()
        let image = dir.file("flags.qcow2")
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", image, "10M"])
        try InfoTool.must("qemu-img", ["snapshot", "-c", "s", image])
        for bits: UInt8 in [1, 2, 3] {
            try dir.patch("flags.qcow2", at: 79, [bits])
            try expectAllModesSame(image)
        }
    }

    @Test func formatsNamedOrProbed() throws {
        let dir = try InfoScratch()
        let qcow2 = dir.file("a.qcow2"), raw = dir.file("a.raw")
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", qcow2, "4M"])
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "raw", raw, "4M"])
        try expectAllModesSame(qcow2, extra: ["-f", "qcow2"])
        try expectAllModesSame(qcow2, extra: ["-f", "raw"])  // the qcow2 file read as raw
        try expectAllModesSame(raw, extra: ["-f", "qcow2"])  // not qcow2: an error
        try expectAllModesSame(raw, extra: ["-f", "vmdkx"])
        try expectAllModesSame(qcow2, extra: ["-U"])
        // A qcow2 magic with version 0 is not qcow2 to the prober.
        try dir.patch("a.raw", at: 0, [0x51, 0x46, 0x49, 0xFB])
        try expectAllModesSame(raw)
    }

    @Test func commandLineErrors() throws {
        let dir = try InfoScratch()
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", dir.file("x.qcow2"), "1M"])
        for args in [[dir.file("nonexistent")], [dir.path], ["--output=xml", dir.file("x.qcow2")],
                     [], [dir.file("x.qcow2"), dir.file("x.qcow2")], ["-f", "foo", dir.file("nonexistent")]] {
            try InfoCompare.expectSame(args)
        }
    }

    /// The built binary, run from `directory` with `path` as given, against
    /// qemu-img: status, standard error and output.
    private func expectBinaryMatches(_ path: String, in directory: String,
                                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let binary = try TestTools.qcowkit()
        for mode in outputModes {
            let expected = InfoCompare.normalized(try InfoTool.run("qemu-img", ["info"] + mode + [path], in: directory))
            let got = InfoCompare.normalized(try InfoTool.run(binary, ["info"] + mode + [path], in: directory))
            #expect(got == expected, "info \(mode) \(path)", sourceLocation: sourceLocation)
        }
    }
}

/// Snapshot fields qemu-img cannot set without a running VM (VM state size,
/// VM clock, icount, odd dates), patched into a real table: both programs
/// must read them alike.
@Suite struct InfoInteropSnapshotFieldTests {
    struct Fields: Sendable, CustomTestStringConvertible {
        var vmClock: UInt64
        var vmState32: UInt32
        var vmStateLarge: UInt64
        var icount: UInt64
        var dateSec: UInt32
        var dateNsec: UInt32
        var testDescription: String { "clock \(vmClock) state \(vmState32)/\(vmStateLarge) icount \(icount)" }
    }

    @Test(arguments: [
        Fields(vmClock: 1_500_000_000, vmState32: 1000, vmStateLarge: 1000, icount: 0, dateSec: 0, dateNsec: 0),
        Fields(vmClock: 90_061_999_999_999, vmState32: 0, vmStateLarge: 1023 << 20, icount: .max, dateSec: 1, dateNsec: 999_999_999),
        Fields(vmClock: 3_600_000_000_000 * 100, vmState32: 4_294_967_295, vmStateLarge: 1_649_267_441_664,
               icount: 123_456_789, dateSec: .max, dateNsec: 5),
        Fields(vmClock: .max, vmState32: 7, vmStateLarge: .max, icount: 1 << 63, dateSec: 2_000_000_000, dateNsec: 1),
        Fields(vmClock: 59_999_000_000, vmState32: 511, vmStateLarge: 1_048_575, icount: .max - 1,
               dateSec: 1_234_567_890, dateNsec: 0),
    ])
    func patchedSnapshotFields(fields: Fields) throws {
        let dir = try InfoScratch()
        let image = dir.file("fields.qcow2")
        try InfoTool.must("qemu-img", ["create", "-q", "-f", "qcow2", image, "64M"])
        try InfoTool.must("qemu-img", ["snapshot", "-c", "patched", image])
        try InfoTool.must("qemu-img", ["snapshot", "-c", "plain", image])
        let header = try Data(contentsOf: URL(fileURLWithPath: image))
        let table = header[64..<72].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
            (0..<MemoryLayout<T>.size).reversed().map { UInt8(truncatingIfNeeded: v >> ($0 * 8)) }
        }
        try dir.patch("fields.qcow2", at: table + 16, be(fields.dateSec) + be(fields.dateNsec) + be(fields.vmClock) + be(fields.vmState32))
        try dir.patch("fields.qcow2", at: table + 40, be(fields.vmStateLarge))
        try dir.patch("fields.qcow2", at: table + 56, be(fields.icount))
        for mode in [[], ["--output=json"]] {
            try InfoCompare.expectSame(mode + [image])
        }
        // With less extra data, the 32-bit VM state size and "no icount" apply.
        try dir.patch("fields.qcow2", at: table + 36, be(UInt32(8)))
        // Keep the entry's length: the name moves into the former extra data.
        try dir.patch("fields.qcow2", at: table + 40 + 8, Array("1patched".utf8) + [UInt8](repeating: 0x41, count: 8))
        try dir.patch("fields.qcow2", at: table + 14, be(UInt16(23)))
        for mode in [[], ["--output=json"]] {
            try InfoCompare.expectSame(mode + [image])
        }
    }
}
