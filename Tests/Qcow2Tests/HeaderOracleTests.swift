// qemu-img 7.2 as the oracle for header validation: each damaged header is
// written to a real file; qemu-img must refuse it with the same message we
// give (or accept it when we do). Where QcowKit refuses what QEMU accepts, the
// divergence is deliberate and listed in its own test.
import Foundation
import Testing
@testable import Qcow2
import TestSupport

struct HeaderDamage: Sendable, CustomTestStringConvertible {
    let name: String
    let apply: @Sendable ([UInt8]) -> [UInt8]
    var testDescription: String { name }

    init(_ name: String, _ apply: @escaping @Sendable ([UInt8]) -> [UInt8]) {
        self.name = name
        self.apply = apply
    }

    static func field<T: FixedWidthInteger & Sendable>(_ name: String, _ offset: Int, _ value: T) -> HeaderDamage {
        HeaderDamage(name) { $0.patched(value, at: offset) }
    }

    /// Replaces the extension area (after the 112-byte header) with `extensions`.
    static func extensions(_ name: String, autoclear: AutoclearFeatures = [], _ extensions: [HeaderExtension]) -> HeaderDamage {
        HeaderDamage(name) { bytes in
            let area = HeaderExtension.encodeAll(extensions)
            return bytes.patched(bytes: area + [UInt8](repeating: 0, count: 0x200), at: 112)
                .patched(autoclear.rawValue, at: Field.autoclearFeatures)
        }
    }
}

/// A file made by qemu-img, damaged, then opened by both.
struct OracleImage {
    let scratch: ScratchDirectory
    let path: String

    init(_ damage: HeaderDamage) throws {
        scratch = try ScratchDirectory()
        let base = scratch.file("base.qcow2")
        let created = try run(QemuImg.path, ["create", "-q", "-f", "qcow2", base, "64M"])
        try #require(created.status == 0, "qemu-img create failed: \(created.stderr)")
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: base)))
        path = scratch.file("damaged.qcow2")
        try Data(damage.apply(original)).write(to: URL(fileURLWithPath: path))
    }

    /// Our reason for refusing the file, or nil if we open it.
    func ourError(writable: Bool = false) -> String? {
        do {
            let image = try Qcow2Image.open(path: path, writable: writable)
            try image.close()
            return nil
        } catch {
            return "\(error)"
        }
    }
}

private func bitmaps(_ count: UInt32, size: UInt64 = 0, offset: UInt64 = 0x30000, reserved: UInt32 = 0) -> HeaderExtension {
    .bitmaps(BitmapsExtension(bitmapCount: count, directorySize: size, directoryOffset: offset, reserved: reserved).encode())
}

private func featureTable(_ entries: [(UInt8, String)]) -> HeaderExtension {
    .featureNameTable(entries.map { FeatureName(kind: .incompatible, bit: $0.0, name: $0.1) })
}

@Suite struct HeaderOracleTests {
    /// Damage QEMU refuses; we must refuse it with QEMU's words.
    static let refused: [HeaderDamage] = [
        .field("magic", Field.magic, UInt32(0x1234_5678)),
        .field("version 1", Field.version, UInt32(1)),
        .field("version 4", Field.version, UInt32(4)),
        .field("cluster_bits 8", Field.clusterBits, UInt32(8)),
        .field("cluster_bits 22", Field.clusterBits, UInt32(22)),
        .field("header_length 100", Field.headerLength, UInt32(100)),
        .field("header_length past cluster", Field.headerLength, UInt32(65537)),
        HeaderDamage("backing file offset past cluster") {
            $0.patched(UInt64(65537), at: Field.backingFileOffset).patched(UInt32(4), at: Field.backingFileSize)
        },
        HeaderDamage("backing file name 1024 bytes") {
            $0.patched(UInt64(0x1000), at: Field.backingFileOffset).patched(UInt32(1024), at: Field.backingFileSize)
        },
        HeaderDamage("backing file name past cluster") {
            $0.patched(UInt64(65530), at: Field.backingFileOffset).patched(UInt32(10), at: Field.backingFileSize)
        },
        .field("refcount_order 7", Field.refcountOrder, UInt32(7)),
        HeaderDamage("compression type 2") {
            $0.patched(UInt8(2), at: Field.compressionType).patched(UInt64(8), at: Field.incompatibleFeatures)
        },
        .field("zstd without the bit", Field.compressionType, UInt8(1)),
        .field("compression bit with zlib", Field.incompatibleFeatures, UInt64(8)),
        .field("crypt_method 3", Field.cryptMethod, UInt32(3)),
        .field("unknown incompatible bit", Field.incompatibleFeatures, UInt64(1 << 5)),
        .field("unknown incompatible bits", Field.incompatibleFeatures, UInt64(1 << 5 | 1 << 40)),
        HeaderDamage("named incompatible bits") {
            HeaderDamage.extensions("", [featureTable([(5, "five"), (40, "forty")])]).apply($0)
                .patched(UInt64(1 << 5 | 1 << 40 | 1 << 7), at: Field.incompatibleFeatures)
        },
        HeaderDamage("extended L2 with 8 KiB clusters") {
            $0.patched(UInt64(16), at: Field.incompatibleFeatures).patched(UInt32(13), at: Field.clusterBits)
        },
        .field("l1_size 0", Field.l1Size, UInt32(0)),
        .field("l1_size too large", Field.l1Size, UInt32(0x100_0000)),
        .field("L1 table misaligned", Field.l1TableOffset, UInt64(0x30001)),
        .field("refcount table misaligned", Field.refcountTableOffset, UInt64(0x10001)),
        .field("refcount table too large", Field.refcountTableClusters, UInt32(0x1000)),
        .field("refcount table empty", Field.refcountTableClusters, UInt32(0)),
        HeaderDamage("too many snapshots") {
            $0.patched(UInt32(65537), at: Field.snapshotCount).patched(UInt64(0x10000), at: Field.snapshotsOffset)
        },
        HeaderDamage("snapshot table misaligned") {
            $0.patched(UInt32(1), at: Field.snapshotCount).patched(UInt64(0x10001), at: Field.snapshotsOffset)
        },
        .field("size 2^62", Field.size, UInt64(1) << 62),
        .field("size 2^55", Field.size, UInt64(1) << 55),
        .field("size 2^64-1", Field.size, UInt64.max),
        HeaderDamage("truncated to 50 bytes") { Array($0.prefix(50)) },
        HeaderDamage("truncated to 100 bytes") { Array($0.prefix(100)) },
        .field("extension past cluster", 0x74, UInt32(0x20000)),
        HeaderDamage("extension header cut by the backing file name") {
            $0.patched(UInt64(0x74), at: Field.backingFileOffset).patched(UInt32(0), at: Field.backingFileSize)
        },
        .extensions("backing format of 16 bytes", [.backingFormat("0123456789abcdef")]),
        .extensions("bitmaps extension of 16 bytes", [.bitmaps([UInt8](repeating: 0, count: 16))]),
        .extensions("zero bitmaps", autoclear: .bitmaps, [bitmaps(0)]),
        .extensions("65536 bitmaps", autoclear: .bitmaps, [bitmaps(65536)]),
        .extensions("bitmaps reserved field", autoclear: .bitmaps, [bitmaps(1, reserved: 1)]),
        .extensions("bitmap directory misaligned", autoclear: .bitmaps, [bitmaps(1, offset: 0x30001)]),
        .extensions("bitmap directory too large", autoclear: .bitmaps, [bitmaps(1, size: 64 << 20)]),
        .extensions("encryption header without LUKS", [.fullDiskEncryption([UInt8](repeating: 0, count: 16))]),
        HeaderDamage("feature table after a broken extension") {
            HeaderDamage.extensions("", [.unknown(type: 0x1234, data: []), featureTable([(5, "five")])]).apply($0)
                .patched(UInt32(0x100000), at: 112 + 4).patched(UInt64(1 << 5), at: Field.incompatibleFeatures)
        },
        HeaderDamage("feature table before a broken bitmaps extension") {
            HeaderDamage.extensions("", autoclear: .bitmaps, [featureTable([(5, "five")]), bitmaps(0)]).apply($0)
                .patched(UInt64(1 << 5), at: Field.incompatibleFeatures)
        },
        HeaderDamage("version 2 with junk at byte 72") {
            $0.patched(UInt32(2), at: Field.version).patched(bytes: [0x12, 0x34, 0x56, 0x78, 0, 0x10, 0, 0], at: 72)
        },
    ]

    @Test(arguments: refused)
    func refusedWithQemuMessage(_ damage: HeaderDamage) throws {
        let image = try OracleImage(damage)
        let qemu = try QemuImg.openError(image.path)
        try #require(qemu != nil, "qemu-img opened it")
        #expect(image.ourError() == qemu)
    }

    /// Unusual headers QEMU accepts; so must we.
    static let accepted: [HeaderDamage] = [
        HeaderDamage("unchanged") { $0 },
        .field("header_length 104", Field.headerLength, UInt32(104)),
        .field("header_length 106", Field.headerLength, UInt32(106)),
        HeaderDamage("header_length 120 with unknown fields") {
            let area = [UInt8](repeating: 0xaa, count: 8) + HeaderExtension.encodeAll([featureTable([(9, "nine")])])
            return $0.patched(UInt32(120), at: Field.headerLength).patched(bytes: area, at: 112)
        },
        .field("version 2 header in a version 3 image", Field.version, UInt32(2)),
        HeaderDamage("backing file name with a NUL") {
            $0.patched(UInt64(0x1000), at: Field.backingFileOffset).patched(UInt32(3), at: Field.backingFileSize)
                .patched(bytes: Array("a\0c".utf8), at: 0x1000)
        },
        HeaderDamage("feature table with a partial entry") {
            HeaderDamage.extensions("", [.unknown(type: HeaderExtension.Magic.featureNameTable, data: [0, 9, 65, 66])]).apply($0)
        },
        HeaderDamage("backing file name of 1023 bytes") {
            $0.patched(UInt64(0x1000), at: Field.backingFileOffset).patched(UInt32(1023), at: Field.backingFileSize)
        },
        .field("corrupt bit, read-only", Field.incompatibleFeatures, UInt64(2)),
        .field("dirty bit, read-only", Field.incompatibleFeatures, UInt64(1)),
        .field("unknown compatible bit", Field.compatibleFeatures, UInt64(1 << 10)),
        .field("unknown autoclear bit", Field.autoclearFeatures, UInt64(1 << 10)),
        .extensions("backing format of 15 bytes", [.backingFormat("0123456789abcde")]),
        .extensions("bitmaps without the autoclear bit", [bitmaps(1)]),
        .extensions("unknown extension", [.unknown(type: 0x1234, data: Array("hello".utf8))]),
        .extensions("external data file name without the bit", [.externalDataFile("data.raw")]),
        .field("extension filling the cluster", 0x74, UInt32(0x10000 - 0x78)),
        HeaderDamage("extended L2 with 16 KiB clusters") {
            // 16 MiB: what one L1 entry maps with these L2 tables.
            $0.patched(UInt64(16), at: Field.incompatibleFeatures).patched(UInt32(14), at: Field.clusterBits)
                .patched(UInt64(16 << 20), at: Field.size)
        },
    ]

    @Test(arguments: accepted)
    func acceptedLikeQemu(_ damage: HeaderDamage) throws {
        let image = try OracleImage(damage)
        #expect(try QemuImg.openError(image.path) == nil)
        #expect(image.ourError() == nil)
    }

    @Test func corruptImageRefusedWritableLikeQemu() throws {
        let image = try OracleImage(.field("corrupt bit", Field.incompatibleFeatures, UInt64(2)))
        let io = try run(TestTools.qemuIO(), ["-c", "read 0 512", image.path])
        let prefix = "qemu-io: can't open device \(image.path): "
        let line = io.stderr.split(separator: "\n").first.map(String.init) ?? ""
        try #require(line.hasPrefix(prefix), "qemu-io said: \(io.stderr)")
        #expect(image.ourError(writable: true) == String(line.dropFirst(prefix.count)))
    }

    /// Where QEMU opens the image and we deliberately do not: encryption and
    /// external data files are unsupported, and tables over the header or
    /// past the end of the file (which QEMU reads as zeroes) are refused.
    static let refusedByUsOnlyCases: [(HeaderDamage, Qcow2Error)] = [
        (.field("crypt_method 1", Field.cryptMethod, UInt32(1)), .unsupportedEncryption(method: 1)),
        (.field("external data file bit", Field.incompatibleFeatures, UInt64(4)), .unsupportedFeature("external data file")),
        (.field("L1 table past the end", Field.l1TableOffset, UInt64(0x100000)), .tableBeyondEndOfFile(table: "Active L1 table")),
        (.field("L1 table over the header", Field.l1TableOffset, UInt64(0)), .tableOffsetInvalid(table: "Active L1 table")),
        (.field("refcount table past the end", Field.refcountTableOffset, UInt64(0x100000)),
         .tableBeyondEndOfFile(table: "Reference count table")),
        (HeaderDamage("snapshot table past the end") {
            $0.patched(UInt32(1), at: Field.snapshotCount).patched(UInt64(0x100000), at: Field.snapshotsOffset)
        }, .tableBeyondEndOfFile(table: "Snapshot table")),
    ]

    @Test(arguments: refusedByUsOnlyCases)
    func refusedByUsOnly(_ damage: HeaderDamage, _ expected: Qcow2Error) throws {
        let image = try OracleImage(damage)
        #expect(try QemuImg.openError(image.path) == nil)
        #expect(image.ourError() == expected.description)
    }
}
