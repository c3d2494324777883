// Every header field set to 0, 1, its largest value and one less, one at a
// time, through info, map and convert in-process: each either fails with an
// error or reads the data the image still describes.
import Testing
@testable import Qcow2

@Suite("Hostile images: header fields at their extremes")
struct HostileHeaderFieldTests {
    @Test("the undamaged image reads as built", .tags(.hostile))
    func baseImage() throws {
        let scratch = try HostileScratch()
        let path = try scratch.write("base.qcow2", HostileImage().bytes)
        let outcome = HostileReaders.run(path, scratch: scratch)
        #expect(try outcome.convert.get() == HostileImage.guest)
        #expect(try outcome.info.get().size == UInt64(HostileImage.virtualSize))
        // Data, unallocated, data, unallocated, compressed, unallocated, the
        // zero cluster, the unallocated rest; all but data read as zero.
        let runs = try outcome.map.get()
        #expect(runs.map(\.offset) == [0, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000])
        #expect(runs.map(\.zero) == [false, true, false, true, false, true, true, true])
        let snapshots = try SnapshotTable.read(from: Qcow2Image.open(path: path))
        #expect(snapshots.entries.map(\.name) == ["before"])
    }

    /// The extremes with which the image still reads (checked against the
    /// data it must give); every other extreme must be refused. Values the
    /// field holds already (l1_size 1, ...) and fields QEMU ignores when
    /// reading (compatible and autoclear bits, the backing name's length
    /// without an offset) are among them; a magic or a version below 2 makes
    /// the file raw.
    static let readable: [String: Set<String>] = [
        "magic": ["0", "1", "max", "max-1"], "version": ["0", "1"],
        "backing_file_offset": ["0", "1"], "backing_file_size": ["0", "1", "max", "max-1"],
        "size": ["0", "1"], "crypt_method": ["0"], "l1_size": ["1"], "refcount_table_clusters": ["1"],
        "nb_snapshots": ["0", "1"], "incompatible_features": ["0", "1"],
        "compatible_features": ["0", "1", "max", "max-1"], "autoclear_features": ["0", "1", "max", "max-1"],
        "refcount_order": ["0", "1"], "compression_type": ["0"],
    ]

    @Test("extreme values fail cleanly or read correctly", .tags(.hostile), arguments: HostileImage.headerFields)
    func extremes(_ field: HostileImage.Field) throws {
        let scratch = try HostileScratch()
        var read: Set<String> = []
        for (value, label) in zip(field.extremes, ["0", "1", "max", "max-1"]) {
            let image = HostileImage().patching(value, at: field.offset, width: field.width)
            let path = try scratch.write("\(field.name)-\(value).qcow2", image.bytes)
            let outcome = HostileReaders.run(path, scratch: scratch)
            HostileReaders.check(outcome, expected: image.expectedGuest, "\(field.name) = \(value)")
            if (try? outcome.convert.get()) != nil { read.insert(label) }
        }
        #expect(read == Self.readable[field.name] ?? [], "\(field.name)")
    }

    /// Values that must be refused, whatever else the image says: the
    /// readers may not carry on with them.
    @Test("values outside the format's range are refused by every reader", .tags(.hostile), arguments: [
        ("version", 4, UInt64(UInt32.max)), ("cluster_bits", 20, 8), ("cluster_bits", 20, 22),
        ("l1_size", 36, UInt64(UInt32.max)), ("refcount_table_clusters", 56, UInt64(UInt32.max)),
        ("nb_snapshots", 60, UInt64(UInt32.max)), ("refcount_order", 96, 7), ("header_length", 100, 0),
        ("crypt_method", 32, 1), ("incompatible_features", 72, UInt64.max),
    ] as [(String, Int, UInt64)])
    func refused(_ name: String, _ offset: Int, _ value: UInt64) throws {
        let width = HostileImage.headerFields.first { $0.offset == offset }?.width ?? 8
        let scratch = try HostileScratch()
        let path = try scratch.write("bad.qcow2", HostileImage().patching(value, at: offset, width: width).bytes)
        let outcome = HostileReaders.run(path, scratch: scratch)
        #expect(throws: (any Error).self, "\(name) = \(value): info") { try outcome.info.get() }
        #expect(throws: (any Error).self, "\(name) = \(value): map") { try outcome.map.get() }
        #expect(throws: (any Error).self, "\(name) = \(value): convert") { try outcome.convert.get() }
    }
}

extension Tag {
    @Tag static var hostile: Self
}
