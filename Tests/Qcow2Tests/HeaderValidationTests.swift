// One test per invalid header field, each built from the valid fixture and
// expecting the specific error.
import Testing
@testable import Qcow2

@Suite struct HeaderValidationTests {
    let valid = Fixtures.firstCluster()

    @Test func fixtureIsValid() throws {
        let layout = try Fixtures.open(valid)
        #expect(layout.header == Fixtures.validHeader())
        #expect(layout.featureNames == FeatureName.qemuTable)
        #expect(layout.backingFileName == nil)
        #expect(!layout.bitmapsAreStale)
    }

    // MARK: Fixed header

    @Test func badMagic() {
        #expect(throws: Qcow2Error.notQcow2) { try Fixtures.open(valid.patched(UInt32(0x5146_49fa), at: Field.magic)) }
    }

    @Test(arguments: [UInt32(0), 1, 4, 0xffff_ffff])
    func unsupportedVersion(_ version: UInt32) {
        #expect(throws: Qcow2Error.unsupportedVersion(version)) {
            try Fixtures.open(valid.patched(version, at: Field.version))
        }
    }

    @Test(arguments: [UInt32(0), 8, 22, 64])
    func unsupportedClusterBits(_ bits: UInt32) {
        #expect(throws: Qcow2Error.unsupportedClusterSize(bits: bits)) {
            try Fixtures.open(valid.patched(bits, at: Field.clusterBits))
        }
    }

    @Test(arguments: [UInt32(0), 72, 103])
    func headerLengthTooShort(_ length: UInt32) {
        #expect(throws: Qcow2Error.headerTooShort(length)) {
            try Fixtures.open(valid.patched(length, at: Field.headerLength))
        }
    }

    @Test func headerLengthBeyondCluster() {
        #expect(throws: Qcow2Error.headerExceedsCluster(65537)) {
            try Fixtures.open(valid.patched(UInt32(65537), at: Field.headerLength))
        }
    }

    @Test func headerLength104MeansZlibAndNoCompressionByte() throws {
        // Without byte 104 in the header, a stray value there is extension data, not a type.
        let bytes = valid.patched(UInt32(104), at: Field.headerLength).patched(UInt8(7), at: Field.compressionType)
        let h = try Qcow2Header.decode(bytes)
        #expect(h.compressionType == .zlib)
        #expect(h.headerLength == 104)
    }

    @Test func backingFileOffsetBeyondCluster() {
        let bytes = valid.patched(UInt64(65537), at: Field.backingFileOffset).patched(UInt32(4), at: Field.backingFileSize)
        #expect(throws: Qcow2Error.invalidBackingFileOffset(65537)) { try Fixtures.open(bytes) }
    }

    @Test func backingFileNameTooLong() throws {
        let base = valid.patched(UInt64(0x1000), at: Field.backingFileOffset)
        #expect(throws: Qcow2Error.backingFileNameTooLong(1024)) {
            try Fixtures.open(base.patched(UInt32(1024), at: Field.backingFileSize))
        }
        // 1023 bytes is the most QEMU stores.
        let name = [UInt8](repeating: UInt8(ascii: "b"), count: 1023)
        let layout = try Fixtures.open(base.patched(UInt32(1023), at: Field.backingFileSize).patched(bytes: name, at: 0x1000))
        #expect(layout.backingFileName == String(repeating: "b", count: 1023))
    }

    @Test func backingFileNameRunsPastCluster() {
        let bytes = valid.patched(UInt64(65530), at: Field.backingFileOffset).patched(UInt32(10), at: Field.backingFileSize)
        #expect(throws: Qcow2Error.backingFileNameTooLong(10)) { try Fixtures.open(bytes) }
    }

    @Test func refcountOrderTooLarge() {
        #expect(throws: Qcow2Error.refcountWidthTooLarge(order: 7)) {
            try Fixtures.open(valid.patched(UInt32(7), at: Field.refcountOrder))
        }
    }

    @Test func unknownCompressionType() {
        let bytes = valid.patched(UInt8(2), at: Field.compressionType)
            .patched(IncompatibleFeatures.compressionType.rawValue, at: Field.incompatibleFeatures)
        #expect(throws: Qcow2Error.invalidCompressionType(2)) { try Fixtures.open(bytes) }
    }

    @Test func zstdWithoutCompressionBit() {
        #expect(throws: Qcow2Error.compressionTypeFlagMismatch(bitSet: false)) {
            try Fixtures.open(valid.patched(UInt8(1), at: Field.compressionType))
        }
    }

    @Test func compressionBitWithZlib() {
        #expect(throws: Qcow2Error.compressionTypeFlagMismatch(bitSet: true)) {
            try Fixtures.open(valid.patched(IncompatibleFeatures.compressionType.rawValue, at: Field.incompatibleFeatures))
        }
    }

    @Test func zstdWithCompressionBitIsValid() throws {
        let layout = try Fixtures.open(valid.patched(UInt8(1), at: Field.compressionType)
            .patched(IncompatibleFeatures.compressionType.rawValue, at: Field.incompatibleFeatures))
        #expect(layout.header.compressionType == .zstd)
    }

    @Test(arguments: [UInt32(1), 2, 3])
    func encryptionRefused(_ method: UInt32) {
        #expect(throws: Qcow2Error.unsupportedEncryption(method: method)) {
            try Fixtures.open(valid.patched(method, at: Field.cryptMethod))
        }
    }

    // MARK: Feature bits

    @Test func unknownIncompatibleBitNamedFromFeatureTable() {
        let table = FeatureName.qemuTable + [FeatureName(kind: .incompatible, bit: 5, name: "future feature")]
        let bytes = Fixtures.firstCluster(extensions: [.featureNameTable(table)])
            .patched(UInt64(1 << 5), at: Field.incompatibleFeatures)
        #expect(throws: Qcow2Error.unsupportedIncompatibleFeatures(names: ["future feature"])) { try Fixtures.open(bytes) }
    }

    @Test func unknownIncompatibleBitsUnnamed() {
        // The bits QEMU cannot name are reported together, as a hex mask.
        let bytes = valid.patched(UInt64(1 << 5 | 1 << 40), at: Field.incompatibleFeatures)
        #expect(throws: Qcow2Error.unsupportedIncompatibleFeatures(names: ["Unknown incompatible feature: 10000000020"])) {
            try Fixtures.open(bytes)
        }
    }

    @Test func unknownIncompatibleBitsNamedInTableOrder() {
        let table = [FeatureName(kind: .incompatible, bit: 40, name: "forty"),
                     FeatureName(kind: .compatible, bit: 5, name: "not this one"),
                     FeatureName(kind: .incompatible, bit: 5, name: "five")]
        let bytes = Fixtures.firstCluster(extensions: [.featureNameTable(table)])
            .patched(UInt64(1 << 5 | 1 << 40 | 1 << 7), at: Field.incompatibleFeatures)
        #expect(throws: Qcow2Error.unsupportedIncompatibleFeatures(names: ["forty", "five", "Unknown incompatible feature: 80"])) {
            try Fixtures.open(bytes)
        }
    }

    @Test func unknownBitIsReportedEvenWhenLaterExtensionsAreBroken() {
        // The feature table is read up to the first bad extension.
        let table = [FeatureName(kind: .incompatible, bit: 5, name: "five")]
        let broken = HeaderExtension.unknown(type: 0x1234, data: [])
        var bytes = Fixtures.firstCluster(extensions: [.featureNameTable(table), broken])
        let brokenLengthOffset = 112 + 8 + 48 + 4
        bytes = bytes.patched(UInt32(0x100000), at: brokenLengthOffset).patched(UInt64(1 << 5), at: Field.incompatibleFeatures)
        #expect(throws: Qcow2Error.unsupportedIncompatibleFeatures(names: ["five"])) { try Fixtures.open(bytes) }
    }

    @Test func externalDataFileRefused() {
        let bytes = Fixtures.firstCluster(extensions: [.externalDataFile("data.raw")])
            .patched(IncompatibleFeatures.externalDataFile.rawValue, at: Field.incompatibleFeatures)
        #expect(throws: Qcow2Error.unsupportedFeature("external data file")) { try Fixtures.open(bytes) }
    }

    @Test func externalDataFileExtensionWithoutBitIsCarried() throws {
        let layout = try Fixtures.open(Fixtures.firstCluster(extensions: [.externalDataFile("data.raw")]))
        #expect(layout.extensions == [.externalDataFile("data.raw")])
    }

    @Test func corruptImageRefusedWritable() {
        let bytes = valid.patched(IncompatibleFeatures.corrupt.rawValue, at: Field.incompatibleFeatures)
        #expect(throws: Qcow2Error.imageIsCorrupt) { try Fixtures.open(bytes, writable: true) }
    }

    @Test func corruptImageAcceptedReadOnly() throws {
        let bytes = valid.patched(IncompatibleFeatures.corrupt.rawValue, at: Field.incompatibleFeatures)
        #expect(try Fixtures.open(bytes, writable: false).header.isCorrupt)
    }

    @Test func extendedL2NeedsSubclustersOfASector() throws {
        var h = Fixtures.validHeader()
        h.incompatibleFeatures = .extendedL2
        h.clusterBits = 13
        h.l1Size = 64
        h.l1TableOffset = 0x6000
        h.refcountTableOffset = 0x2000
        #expect(throws: Qcow2Error.unsupportedSubclusterSize(256)) {
            try Fixtures.open(Fixtures.firstCluster(header: h))
        }
        h.clusterBits = 14
        h.l1TableOffset = 0xc000
        h.refcountTableOffset = 0x4000
        #expect(try Fixtures.open(Fixtures.firstCluster(header: h)).header.subclusterSize == 512)
    }

    // MARK: Size and L1 table

    @Test func l1TableTooSmallForSize() {
        #expect(throws: Qcow2Error.l1TableTooSmall) { try Fixtures.open(valid.patched(UInt32(0), at: Field.l1Size)) }
        // 1 GiB needs two L1 entries with 64 KiB clusters.
        #expect(throws: Qcow2Error.l1TableTooSmall) {
            try Fixtures.open(valid.patched(UInt64(1 << 30), at: Field.size))
        }
    }

    @Test func imageTooBig() {
        #expect(throws: Qcow2Error.imageTooBig(1 << 62)) { try Fixtures.open(valid.patched(UInt64(1 << 62), at: Field.size)) }
        #expect(throws: Qcow2Error.imageTooBig(UInt64(1) << 63)) { try Fixtures.open(valid.patched(UInt64(1) << 63, at: Field.size)) }
    }

    @Test func sizeNear2To64WrapsLikeQemu() {
        // QEMU's L1 size computation wraps here, so only the final sector count check catches it.
        #expect(throws: Qcow2Error.virtualSizeTooLarge(UInt64.max)) { try Fixtures.open(valid.patched(UInt64.max, at: Field.size)) }
    }

    @Test func l1TableTooLarge() {
        // 32 MiB of entries is the cap: 4 Mi entries fit, one more does not.
        #expect(throws: Qcow2Error.tableTooLarge(table: "Active L1 table")) {
            try Fixtures.open(valid.patched(UInt32(4 << 20 + 1), at: Field.l1Size))
        }
    }

    @Test func l1TableMisaligned() {
        #expect(throws: Qcow2Error.tableOffsetInvalid(table: "Active L1 table")) {
            try Fixtures.open(valid.patched(UInt64(0x30001), at: Field.l1TableOffset))
        }
    }

    @Test func l1TableOffsetOverflows() {
        #expect(throws: Qcow2Error.tableOffsetInvalid(table: "Active L1 table")) {
            try Fixtures.open(valid.patched(UInt64(1) << 63, at: Field.l1TableOffset))
        }
    }

    @Test func l1TablePastEndOfFile() {
        #expect(throws: Qcow2Error.tableBeyondEndOfFile(table: "Active L1 table")) {
            try Fixtures.open(valid.patched(UInt64(0x100000), at: Field.l1TableOffset))
        }
        // The table's last byte must be in the file too.
        #expect(throws: Qcow2Error.tableBeyondEndOfFile(table: "Active L1 table")) {
            try Fixtures.open(valid, fileSize: Fixtures.fileSize - 1)
        }
    }

    @Test func l1TableOverHeader() {
        #expect(throws: Qcow2Error.tableOffsetInvalid(table: "Active L1 table")) {
            try Fixtures.open(valid.patched(UInt64(0), at: Field.l1TableOffset))
        }
    }

    @Test func emptyImageNeedsNoL1Table() throws {
        let bytes = valid.patched(UInt64(0), at: Field.size).patched(UInt32(0), at: Field.l1Size)
            .patched(UInt64(0), at: Field.l1TableOffset)
        #expect(try Fixtures.open(bytes).header.l1Size == 0)
    }

    // MARK: Refcount table

    @Test func refcountTableMisaligned() {
        #expect(throws: Qcow2Error.tableOffsetInvalid(table: "Reference count table")) {
            try Fixtures.open(valid.patched(UInt64(0x10200), at: Field.refcountTableOffset))
        }
    }

    @Test func refcountTableTooLarge() {
        // 8 MiB is the cap: 128 clusters of 64 KiB fit, 129 do not.
        #expect(throws: Qcow2Error.tableTooLarge(table: "Reference count table")) {
            try Fixtures.open(valid.patched(UInt32(129), at: Field.refcountTableClusters))
        }
    }

    @Test func refcountTablePastEndOfFile() {
        #expect(throws: Qcow2Error.tableBeyondEndOfFile(table: "Reference count table")) {
            try Fixtures.open(valid.patched(UInt64(0x100000), at: Field.refcountTableOffset))
        }
    }

    @Test func refcountTableWithZeroClusters() {
        #expect(throws: Qcow2Error.noRefcountTable) {
            try Fixtures.open(valid.patched(UInt32(0), at: Field.refcountTableClusters))
        }
    }

    // MARK: Snapshot table

    @Test func tooManySnapshots() {
        let bytes = valid.patched(UInt32(65537), at: Field.snapshotCount).patched(UInt64(0x10000), at: Field.snapshotsOffset)
        #expect(throws: Qcow2Error.tableTooLarge(table: "Snapshot table")) { try Fixtures.open(bytes) }
    }

    @Test func snapshotTableMisaligned() {
        let bytes = valid.patched(UInt32(1), at: Field.snapshotCount).patched(UInt64(0x10001), at: Field.snapshotsOffset)
        #expect(throws: Qcow2Error.tableOffsetInvalid(table: "Snapshot table")) { try Fixtures.open(bytes) }
        // The offset is checked even when there are no snapshots.
        #expect(throws: Qcow2Error.tableOffsetInvalid(table: "Snapshot table")) {
            try Fixtures.open(valid.patched(UInt64(0x10001), at: Field.snapshotsOffset))
        }
    }

    @Test func snapshotTablePastEndOfFile() {
        let bytes = valid.patched(UInt32(2), at: Field.snapshotCount).patched(UInt64(0x30000), at: Field.snapshotsOffset)
        #expect(throws: Qcow2Error.tableBeyondEndOfFile(table: "Snapshot table")) { try Fixtures.open(bytes) }
    }

    // MARK: Truncated header

    @Test(arguments: [0, 3, 4, 71, 72, 100, 103])
    func truncatedVersion3Header(_ length: Int) {
        // Missing bytes read as zeroes, as in QEMU: the header_length field reads as too small.
        let expected: Qcow2Error = length < 4 ? .notQcow2 : length < 8 ? .unsupportedVersion(0) : .headerTooShort(0)
        #expect(throws: expected) { try Fixtures.open(Array(valid.prefix(length)), fileSize: UInt64(length)) }
    }

    @Test func truncatedVersion2Header() {
        var h = Fixtures.validHeader()
        h.version = 2
        h.headerLength = 72
        let v2 = h.encode()
        #expect(v2.count == 72)
        #expect(throws: Never.self) { try Fixtures.open(v2) }
        // Cut before cluster_bits: it reads as 0.
        #expect(throws: Qcow2Error.unsupportedClusterSize(bits: 0)) { try Fixtures.open(Array(v2.prefix(20)), fileSize: 20) }
        // Cut inside the refcount table offset: the cluster count reads as 0.
        #expect(throws: Qcow2Error.noRefcountTable) { try Fixtures.open(Array(v2.prefix(50)), fileSize: 50) }
    }

    @Test func headerEndingAtByte104IsComplete() throws {
        // A file holding just the 104-byte header decodes; its tables then lie past the end.
        let bytes = Array(valid.prefix(104))
        #expect(try Qcow2Header.decode(bytes).refcountTableOffset == 0x10000)
        #expect(throws: Qcow2Error.tableBeyondEndOfFile(table: "Reference count table")) { try Fixtures.open(bytes, fileSize: 104) }
    }
}
