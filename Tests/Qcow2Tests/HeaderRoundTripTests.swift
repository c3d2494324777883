// Encoding and decoding headers and extensions give back what went in,
// including the parts QcowKit does not understand.
import Testing
@testable import Qcow2

@Suite struct HeaderRoundTripTests {
    @Test func version3RoundTrip() throws {
        var h = Fixtures.validHeader()
        h.backingFileOffset = 0x200
        h.backingFileSize = 9
        h.snapshotCount = 3
        h.snapshotsOffset = 0x50000
        h.incompatibleFeatures = [.dirty, .extendedL2]
        h.compatibleFeatures = .lazyRefcounts
        h.autoclearFeatures = .bitmaps
        h.refcountOrder = 6
        let bytes = h.encode()
        #expect(bytes.count == 112)
        #expect(try Qcow2Header.decode(bytes) == h)
    }

    @Test func version2RoundTrip() throws {
        var h = Fixtures.validHeader()
        h.version = 2
        h.headerLength = 72
        let bytes = h.encode()
        #expect(bytes.count == 72)
        #expect(try Qcow2Header.decode(bytes) == h)
    }

    @Test func zstdRoundTrip() throws {
        let h = Qcow2Header(version: 3, clusterBits: 21, size: 1 << 40, refcountOrder: 0, compressionType: .zstd)
        #expect(h.incompatibleFeatures == .compressionType)
        let decoded = try Qcow2Header.decode(h.encode())
        #expect(decoded == h)
        #expect(decoded.compressionType == .zstd)
    }

    @Test func unknownHeaderFieldsArePreserved() throws {
        var h = Fixtures.validHeader()
        h.unknownFields = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        h.headerLength = 128
        let bytes = h.encode()
        #expect(bytes.count == 128)
        #expect(bytes.be(UInt32.self, at: Field.headerLength) == 128)
        let decoded = try Qcow2Header.decode(bytes)
        #expect(decoded.unknownFields == h.unknownFields)
        #expect(decoded == h)
        // Extensions start after the unknown fields.
        let cluster = Fixtures.firstCluster(header: h, extensions: [.backingFormat("raw")])
        #expect(try Fixtures.open(cluster).backingFormat == "raw")
    }

    @Test func headerLengthIsRewrittenAsQemuDoes() throws {
        // A 104-byte header (no compression type byte) is rewritten with 112 bytes.
        let bytes = Fixtures.firstCluster().patched(UInt32(104), at: Field.headerLength)
        let h = try Qcow2Header.decode(bytes)
        #expect(h.headerLength == 104)
        #expect(h.encode().count == 112)
        #expect(h.encode().be(UInt32.self, at: Field.headerLength) == 112)
    }

    @Test func version2IgnoresVersion3Fields() throws {
        // Bytes 72... of a version 2 image are its first extension, not feature bits.
        var h = Fixtures.validHeader()
        h.version = 2
        h.headerLength = 72
        let cluster = h.encode() + HeaderExtension.encodeAll([.backingFormat("qcow2")])
        let layout = try Fixtures.open(cluster)
        #expect(layout.header.incompatibleFeatures == [])
        #expect(layout.header.refcountOrder == 4)
        #expect(layout.header.compressionType == .zlib)
        #expect(layout.backingFormat == "qcow2")
        // Junk there is a broken extension, as QEMU sees it.
        let junk = h.encode() + [0x12, 0x34, 0x56, 0x78, 0x00, 0x10, 0x00, 0x00]
        #expect(try Qcow2Header.decode(junk).incompatibleFeatures == [])
        #expect(throws: Qcow2Error.headerExtensionTooLarge) { try Fixtures.open(junk) }
    }

    @Test func fixtureMatchesQemuImg() throws {
        // The fixture is exactly the first cluster qemu-img 7.2 writes.
        let scratch = try ScratchDirectory()
        let path = scratch.file("x.qcow2")
        #expect(try run(QemuImg.path, ["create", "-q", "-f", "qcow2", path, "64M"]).status == 0)
        let file = try BlockFile(path: path, writable: false)
        defer { try? file.close() }
        #expect(try file.size() == Fixtures.fileSize)
        #expect(try file.readExactly(0x10000, at: 0, step: "test") == Fixtures.firstCluster())
    }
}

@Suite struct HeaderExtensionTests {
    static let samples: [HeaderExtension] = [
        .backingFormat("qcow2"),
        .featureNameTable(FeatureName.qemuTable),
        .bitmaps(BitmapsExtension(bitmapCount: 2, directorySize: 96, directoryOffset: 0x50000).encode()),
        .fullDiskEncryption([0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]),
        .externalDataFile("disk.raw"),
        .unknown(type: 0xdead_beef, data: Array("seven b".utf8)),
        .unknown(type: 0x0000_0001, data: []),
    ]

    @Test func roundTripOfEveryKind() throws {
        let encoded = HeaderExtension.encodeAll(Self.samples)
        #expect(encoded.count % 8 == 0)
        let decoded = try HeaderExtension.decodeAll(encoded, from: 0, to: encoded.count)
        #expect(decoded == Self.samples)
    }

    @Test(arguments: samples)
    func singleRoundTrip(_ ext: HeaderExtension) throws {
        let encoded = HeaderExtension.encodeAll([ext])
        #expect(encoded.count == 8 + (ext.payload.count + 7) / 8 * 8 + 8)
        #expect(encoded.be(UInt32.self, at: 0) == ext.type)
        #expect(encoded.be(UInt32.self, at: 4) == UInt32(ext.payload.count))
        #expect(try HeaderExtension.decodeAll(encoded, from: 0, to: encoded.count) == [ext])
    }

    @Test func stopsAtEndMarker() throws {
        let encoded = HeaderExtension.encodeAll([.backingFormat("raw")]) + HeaderExtension.encodeAll([.backingFormat("qcow2")])
        #expect(try HeaderExtension.decodeAll(encoded, from: 0, to: encoded.count) == [.backingFormat("raw")])
    }

    @Test func areaWithoutEndMarkerIsAccepted() throws {
        var encoded = HeaderExtension.encodeAll([.backingFormat("raw")])
        encoded.removeLast(8)
        #expect(try HeaderExtension.decodeAll(encoded, from: 0, to: encoded.count) == [.backingFormat("raw")])
    }

    @Test func lengthPastAreaIsRefused() throws {
        var encoded = HeaderExtension.encodeAll([.unknown(type: 0x1234, data: [1, 2, 3])])
        encoded = encoded.patched(UInt32(17), at: 4)
        #expect(throws: Qcow2Error.headerExtensionTooLarge) {
            try HeaderExtension.decodeAll(encoded, from: 0, to: encoded.count)
        }
        // Exactly up to the end is fine; the padding may be cut.
        let exact = [UInt8](encoded.prefix(8 + 3))
        #expect(try HeaderExtension.decodeAll(exact.patched(UInt32(3), at: 4), from: 0, to: 11)
            == [.unknown(type: 0x1234, data: [1, 2, 3])])
    }

    @Test func truncatedRecordHeaderIsRefused() {
        let encoded = HeaderExtension.encodeAll([.unknown(type: 0x1234, data: [1, 2, 3])])
        #expect(throws: Qcow2Error.headerExtensionTooLarge) { try HeaderExtension.decodeAll(encoded, from: 0, to: 4) }
        // Even an end marker must fit whole, with a length that fits.
        #expect(throws: Qcow2Error.headerExtensionTooLarge) {
            try HeaderExtension.decodeAll([UInt8](repeating: 0, count: 16).patched(UInt32(9), at: 4), from: 0, to: 16)
        }
    }

    @Test func areaPastTheBytesReadsAsZeroes() throws {
        let encoded = HeaderExtension.encodeAll([.backingFormat("raw")]).dropLast(8)
        #expect(try HeaderExtension.decodeAll(Array(encoded), from: 0, to: 4096) == [.backingFormat("raw")])
    }

    @Test func backingFormatLengthLimit() throws {
        let ok = HeaderExtension.encodeAll([.backingFormat(String(repeating: "f", count: 15))])
        #expect(try HeaderExtension.decodeAll(ok, from: 0, to: ok.count).count == 1)
        let long = HeaderExtension.encodeAll([.backingFormat(String(repeating: "f", count: 2000))])
        #expect(throws: Qcow2Error.invalidHeaderExtension("ERROR: ext_backing_format: len=2000 too large (>=16)")) {
            try HeaderExtension.decodeAll(long, from: 0, to: long.count)
        }
    }

    @Test func namesEndAtNul() throws {
        let encoded = HeaderExtension.encodeAll([.unknown(type: HeaderExtension.Magic.backingFormat, data: Array("raw\0junk".utf8))])
        #expect(try HeaderExtension.decodeAll(encoded, from: 0, to: encoded.count) == [.backingFormat("raw")])
    }

    @Test func partialFeatureTableEntryReadsZeroPadded() throws {
        var data = HeaderExtension.featureNameTable([FeatureName(kind: .autoclear, bit: 3, name: "x")]).payload
        data += [0, 9] + Array("partial".utf8)
        let encoded = HeaderExtension.encodeAll([.unknown(type: HeaderExtension.Magic.featureNameTable, data: data)])
        #expect(try HeaderExtension.decodeAll(encoded, from: 0, to: encoded.count) == [.featureNameTable([
            FeatureName(kind: .autoclear, bit: 3, name: "x"), FeatureName(kind: .incompatible, bit: 9, name: "partial"),
        ])])
    }

    @Test func featureNamesAreCutAt46Bytes() {
        let long = String(repeating: "n", count: 60)
        let payload = HeaderExtension.featureNameTable([FeatureName(kind: .compatible, bit: 1, name: long)]).payload
        #expect(payload.count == 48)
        #expect(payload[2...] == ArraySlice(repeating: UInt8(ascii: "n"), count: 46))
    }

    @Test func staleBitmapsAreFlaggedNotRefused() throws {
        let ext = HeaderExtension.bitmaps(BitmapsExtension(bitmapCount: 0, directorySize: 0, directoryOffset: 1).encode())
        let layout = try Fixtures.open(Fixtures.firstCluster(extensions: [ext]))
        #expect(layout.bitmapsAreStale)
        #expect(layout.bitmaps == nil)
        #expect(layout.extensions == [ext])
    }

    @Test func validBitmapsExtension() throws {
        let bitmaps = BitmapsExtension(bitmapCount: 65535, directorySize: 1024 * 65535, directoryOffset: 0x20000)
        var h = Fixtures.validHeader()
        h.autoclearFeatures = .bitmaps
        let layout = try Fixtures.open(Fixtures.firstCluster(header: h, extensions: [.bitmaps(bitmaps.encode())]))
        #expect(layout.bitmaps == bitmaps)
        #expect(!layout.bitmapsAreStale)
    }

    @Test func bitmapsChecks() throws {
        let cluster: UInt64 = 0x10000
        #expect(throws: Qcow2Error.invalidHeaderExtension("bitmaps_ext: Invalid extension length")) {
            try BitmapsExtension(data: [UInt8](repeating: 0, count: 25))
        }
        #expect(throws: Qcow2Error.invalidHeaderExtension(
            "bitmaps_ext: Image has 65536 bitmaps, exceeding the QEMU supported maximum of 65535")) {
            try BitmapsExtension(bitmapCount: 65536, directorySize: 0, directoryOffset: 0).validate(clusterSize: cluster)
        }
        #expect(throws: Qcow2Error.invalidHeaderExtension(
            "bitmaps_ext: bitmap directory size (67107841) exceeds the maximum supported size (67107840)")) {
            try BitmapsExtension(bitmapCount: 1, directorySize: 67107841, directoryOffset: 0).validate(clusterSize: cluster)
        }
        let roundTrip = BitmapsExtension(bitmapCount: 7, directorySize: 0x1234, directoryOffset: 0x9_0000_0000, reserved: 5)
        #expect(try BitmapsExtension(data: roundTrip.encode()) == roundTrip)
    }
}
