import Testing
@testable import Qcow2
import QemuJSON
@testable import QcowKitCommands

private func info(_ arguments: [String]) throws -> Info.Rendered {
    try Info.parse(arguments).render()
}

private func failure(_ arguments: [String]) -> String? {
    do {
        _ = try info(arguments)
        return nil
    } catch let failure as CommandFailure {
        return failure.message
    } catch {
        return "\(error)"
    }
}

private func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
    (0..<MemoryLayout<T>.size).reversed().map { UInt8(truncatingIfNeeded: v >> ($0 * 8)) }
}

@Suite struct InfoCommandTests {
    @Test func humanAndJsonOutputOfASnapshottedImage() throws {
        let dir = try InfoTestDirectory()
        let entry = SnapshotEntry(l1TableOffset: 0, l1Size: 0, id: "1", name: "before upgrade",
                                  dateSeconds: 1_600_000_000, dateNanoseconds: 42, vmClockNanoseconds: 3_723_004_000_000,
                                  vmStateSize: 1536, diskSize: 1 << 20, icount: nil)
        let table = SnapshotTable(entries: [entry]).encode(virtualSize: 1 << 20)
        try InfoTestImage(backing: "base.raw", backingFormat: "raw", snapshotTable: table, snapshotCount: 1)
            .write(to: dir.file("img.qcow2"))
        let path = dir.file("img.qcow2")

        let human = try info([path]).text
        let date = SnapshotListing.localDate(1_600_000_000)
        let lines = human.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("disk size: ") }
        #expect(lines == [
            "image: \(path)",
            "file format: qcow2",
            "virtual size: 1 MiB (1048576 bytes)",
            "cluster_size: 512",
            "backing file: base.raw (actual path: \(dir.file("base.raw")))",
            "backing file format: raw",
            "Snapshot list:",
            "ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT",
            "1         before upgrade    1.5 KiB \(date) 01:02:03.004           ",
            "Format specific information:",
            "    compat: 1.1",
            "    compression type: zlib",
            "    lazy refcounts: false",
            "    refcount bits: 16",
            "    corrupt: false",
            "    extended l2: false",
            "",
        ])

        let json = try JSONValue.parse(try info(["--output=json", path]).text).get()
        #expect(json["backing-filename"] == .string("base.raw"))
        #expect(json["full-backing-filename"] == .string(dir.file("base.raw")))
        #expect(json["backing-filename-format"] == .string("raw"))
        #expect(json["dirty-flag"] == .bool(false))
        let snapshot = try #require(json["snapshots"]?.arrayValue?.first)
        // Compared as printed: parsing keeps QEMU's printed (hash) order.
        #expect(snapshot.qemuJSON() == JSONValue.object([
            ("id", .string("1")), ("name", .string("before upgrade")), ("vm-state-size", .int(1536)),
            ("date-sec", .int(1_600_000_000)), ("date-nsec", .int(42)), ("vm-clock-sec", .int(3723)),
            ("vm-clock-nsec", .int(4_000_000)),
        ]).qemuJSON())
        // One image without --backing-chain: an object; with it, an array.
        try InfoTestImage().write(to: dir.file("base.raw"))
        let chain = try info(["--output=json", "--backing-chain", dir.file("base.raw")])
        #expect(chain.text.hasPrefix("[\n    {\n"))
    }

    @Test func chainsDeeperThanTheLimitAreRefused() throws {
        let dir = try InfoTestDirectory()
        let limit = Qcow2Limits.maxBackingChainDepth
        try InfoTestImage().write(to: dir.file("l0.qcow2"))
        for level in 1...(limit + 1) {
            try InfoTestImage(backing: "l\(level - 1).qcow2", backingFormat: "qcow2").write(to: dir.file("l\(level).qcow2"))
        }
        // The limit counts backing files below the top, as for every verb:
        // the top and exactly the limit work...
        let ok = try info(["--backing-chain", dir.file("l\(limit).qcow2")])
        #expect(ok.text.components(separatedBy: "image: ").count == limit + 2)
        // ...one more does not.
        #expect(failure(["--backing-chain", dir.file("l\(limit + 1).qcow2")]) == "Backing chain is deeper than \(limit) images")
        // Without --backing-chain nothing below the top is opened.
        #expect(failure([dir.file("l\(limit + 1).qcow2")]) == nil)
    }

    @Test func protocolBackingNamesAreShownButNeverFollowed() throws {
        let dir = try InfoTestDirectory()
        try InfoTestImage(backing: "nbd://example.invalid/disk", backingFormat: "raw").write(to: dir.file("p.qcow2"))
        let text = try info([dir.file("p.qcow2")]).text
        // A protocol name is its own full name: no "actual path".
        #expect(text.contains("backing file: nbd://example.invalid/disk\n"))
        #expect(failure(["--backing-chain", dir.file("p.qcow2")])
            == "Could not open 'nbd://example.invalid/disk': Backing file name 'nbd://example.invalid/disk' uses a pseudo-protocol, which is refused")
    }

    @Test func badSnapshotTablesAreOpenErrors() throws {
        let dir = try InfoTestDirectory()
        var big = [UInt8](repeating: 0, count: 40)
        big.replaceSubrange(36..<40, with: be(UInt32(1025)))
        big += [UInt8](repeating: 0, count: 1025)
        try InfoTestImage(snapshotTable: big, snapshotCount: 1).write(to: dir.file("extra.qcow2"))
        #expect(failure([dir.file("extra.qcow2")])
            == "Could not open '\(dir.file("extra.qcow2"))': Too much extra metadata in snapshot table entry 0")

        // The names run past the end of the file.
        var cut = [UInt8](repeating: 0, count: 40)
        cut.replaceSubrange(12..<16, with: be(UInt16(10)) + be(UInt16(2000)))
        try InfoTestImage(snapshotTable: cut + Array("0123456789".utf8), snapshotCount: 1).write(to: dir.file("cut.qcow2"))
        #expect(failure([dir.file("cut.qcow2")])
            == "Could not open '\(dir.file("cut.qcow2"))': Snapshot table entry 0 lies beyond the end of the file")
    }

    @Test func bitmapExtensionsAreCheckedAsQemuDoes() throws {
        let dir = try InfoTestDirectory()
        func ext(count: UInt32, reserved: UInt32 = 0, size: UInt64 = 64, offset: UInt64 = 1536) -> [UInt8] {
            be(count) + be(reserved) + be(size) + be(offset)
        }
        let cases: [([UInt8], String)] = [
            (ext(count: 0), "found bitmaps extension with zero bitmaps"),
            (ext(count: 1, reserved: 1), "bitmaps_ext: Reserved field is not zero"),
            (ext(count: 70000), "bitmaps_ext: Image has 70000 bitmaps, exceeding the QEMU supported maximum of 65535"),
            (ext(count: 1, offset: 1537), "bitmaps_ext: invalid bitmap directory offset"),
            (ext(count: 1, size: 1 << 30), "bitmaps_ext: bitmap directory size (1073741824) exceeds the maximum supported size (67107840)"),
            (ext(count: 1, size: 0), "Requested bitmap directory size is zero"),
            (ext(count: 1, offset: 1 << 20), "Failed to read bitmap directory"),
            (Array(ext(count: 1).prefix(16)), "bitmaps_ext: Invalid extension length"),
            (ext(count: 2, size: 16), "Broken bitmap directory"),
        ]
        for (i, (payload, message)) in cases.enumerated() {
            let path = dir.file("b\(i).qcow2")
            try InfoTestImage(bitmapsExtension: payload, autoclear: 1).write(to: path)
            #expect(failure([path]) == "Could not open '\(path)': \(message)")
        }
        // Without the autoclear bit the extension is ignored, with QEMU's warning.
        let ignored = dir.file("ignored.qcow2")
        try InfoTestImage(bitmapsExtension: ext(count: 0), autoclear: 0).write(to: ignored)
        let rendered = try info([ignored])
        #expect(rendered.warnings == "qcowkit: warning: a program lacking bitmap support modified this file, so all "
            + "bitmaps are now considered inconsistent\nSome clusters may be leaked, run 'qemu-img check -r' on the image file to fix.")
        #expect(!rendered.text.contains("bitmaps"))
    }

    @Test func bitmapDirectoryEntriesAreChecked() throws {
        func entry(tableOffset: UInt64 = 1 << 20, tableSize: UInt32 = 1, flags: UInt32 = 2, type: UInt8 = 1,
                   granularity: UInt8 = 16, name: String = "bm", extra: UInt32 = 0) -> [UInt8] {
            let raw = be(tableOffset) + be(tableSize) + be(flags) + [type, granularity]
                + be(UInt16(name.utf8.count)) + be(extra) + [UInt8](repeating: 0, count: Int(extra)) + Array(name.utf8)
            return raw + [UInt8](repeating: 0, count: (8 - raw.count % 8) % 8)
        }
        func decode(_ dir: [UInt8], count: UInt32 = 1) -> Result<[BitmapInfo], Error> {
            Result { try BitmapDirectory.decode(dir, count: count, clusterSize: 65536, virtualSize: 1 << 30) }
        }
        let two = try decode(entry(flags: 3, name: "a") + entry(flags: 0, granularity: 13, name: "second"), count: 2).get()
        #expect(two == [BitmapInfo(name: "a", granularity: 65536, flags: [.inUse, .auto]),
                        BitmapInfo(name: "second", granularity: 8192, flags: [])])
        let constraints = "Bitmap 'bm' doesn't satisfy the constraints"
        for (bad, message) in [
            (entry(tableOffset: 0), constraints), (entry(tableOffset: 4096), constraints),
            (entry(tableSize: 0), constraints), (entry(flags: 4), constraints), (entry(type: 2), constraints),
            (entry(granularity: 8), constraints), (entry(granularity: 32), constraints),
            // One 64 KiB table cluster covers 2^19 bits: not 1 GiB at 512 bytes a bit...
            (entry(granularity: 9), constraints),
            (entry(extra: 8), "Bitmap extra data is not supported"),
            (entry() + entry(), "More bitmaps found than specified in header extension"),
            (Array(entry().prefix(20)), "Broken bitmap directory"),
        ] {
            #expect(decode(bad).failureMessage == message)
        }
        // ...unless the bitmap is in use (it may predate a resize).
        #expect((try? decode(entry(flags: 1, granularity: 9)).get())?.first?.flags == [.inUse])
        #expect(decode(entry(), count: 2).failureMessage == "Less bitmaps found than specified in header extension")
    }

    @Test func commandLineIsCheckedLikeQemuImgs() throws {
        let dir = try InfoTestDirectory()
        try InfoTestImage().write(to: dir.file("x.qcow2"))
        #expect(failure([]) == "Expecting one image file name\nTry 'qcowkit --help' for more information")
        #expect(failure([dir.file("x.qcow2"), dir.file("x.qcow2")]) == "Expecting one image file name\nTry 'qcowkit --help' for more information")
        #expect(failure(["--output=yaml", dir.file("x.qcow2")]) == "--output must be used with human or json as argument.")
        #expect(failure(["-f", "vmdk", dir.file("x.qcow2")]) == "Could not open '\(dir.file("x.qcow2"))': Unknown driver 'vmdk'")
        #expect(failure([dir.file("none")]) == "Could not open '\(dir.file("none"))': Could not open '\(dir.file("none"))': No such file or directory")
        #expect(failure([dir.path]) == "Could not open '\(dir.path)': 'file' driver requires '\(dir.path)' to be a regular file")
        #expect(failure(["-U", "--output", "human", dir.file("x.qcow2")]) == nil)
    }

    @Test(arguments: [
        (UInt64(0), "0 B"), (1, "1 B"), (511, "511 B"), (999, "999 B"), (1000, "0.977 KiB"), (1023, "0.999 KiB"),
        (1024, "1 KiB"), (1536, "1.5 KiB"), (12345, "12.1 KiB"), (1_048_575, "1 MiB"), (67_108_864, "64 MiB"),
        (123_456_789, "118 MiB"), (1_073_741_825, "1 GiB"), (1_649_267_441_664, "1.5 TiB"),
        (1_125_899_906_842_624, "1 PiB"), (UInt64.max, "16 EiB"),
    ])
    func sizesAreWrittenAsQemuWritesThem(bytes: UInt64, text: String) {
        #expect(SizeString.format(bytes) == text)
    }
}

extension Result {
    fileprivate var failureMessage: String? {
        if case let .failure(error) = self { return "\(error)" }
        return nil
    }
}
