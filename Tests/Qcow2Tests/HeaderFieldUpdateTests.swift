// The header's field offsets and the in-place updates built on them: each
// update writes exactly the bytes `encode()` puts at those fields.
import Testing
@testable import Qcow2

@Suite("Header field updates")
struct HeaderFieldUpdateTests {
    @Test("field offsets are the spec's (as the tests' own table has them)")
    func fieldOffsets() {
        typealias F = Qcow2Header.FieldOffset
        let ours = [F.magic, F.version, F.backingFileOffset, F.backingFileSize, F.clusterBits, F.size,
                    F.cryptMethod, F.l1Size, F.l1TableOffset, F.refcountTableOffset, F.refcountTableClusters,
                    F.nbSnapshots, F.snapshotsOffset, F.incompatibleFeatures, F.compatibleFeatures,
                    F.autoclearFeatures, F.refcountOrder, F.headerLength, F.compressionType]
        let spec = [Field.magic, Field.version, Field.backingFileOffset, Field.backingFileSize, Field.clusterBits,
                    Field.size, Field.cryptMethod, Field.l1Size, Field.l1TableOffset, Field.refcountTableOffset,
                    Field.refcountTableClusters, Field.snapshotCount, Field.snapshotsOffset,
                    Field.incompatibleFeatures, Field.compatibleFeatures, Field.autoclearFeatures,
                    Field.refcountOrder, Field.headerLength, Field.compressionType]
        #expect(ours == spec)
        #expect(F.incompatibleFeatures == Int(Qcow2Limits.headerV2Length))
    }

    @Test("each update is the encoded header's bytes at its fields")
    func updatesMatchEncoding() {
        var header = Qcow2Header(size: 1 << 30)
        header.l1Size = 0x0102_0304
        header.l1TableOffset = 0x1122_3344_5566_7788
        header.refcountTableOffset = 0x0a0b_0c0d_0e0f_1011
        header.refcountTableClusters = 0x2122_2324
        header.incompatibleFeatures = [.dirty, .extendedL2]
        let encoded = header.encode()
        func slice(_ update: HeaderFieldUpdate) -> [UInt8] {
            Array(encoded[Int(update.offset)..<Int(update.offset) + update.bytes.count])
        }

        let refcount = HeaderFieldUpdate.refcountTableLocation(offset: header.refcountTableOffset, clusters: header.refcountTableClusters)
        #expect(refcount.offset == 48 && refcount.bytes.count == 12)
        #expect(refcount.bytes == slice(refcount))

        let l1 = HeaderFieldUpdate.l1TableLocation(offset: header.l1TableOffset, entries: header.l1Size)
        #expect(l1.offset == 36 && l1.bytes.count == 12)
        #expect(l1.bytes == slice(l1))

        let features = HeaderFieldUpdate.incompatibleFeatures(header.incompatibleFeatures)
        #expect(features.offset == 72 && features.bytes.count == 8)
        #expect(features.bytes == slice(features))

        header.snapshotCount = 0x3132_3334
        header.snapshotsOffset = 0x4142_4344_4546_4748
        let snapshotsEncoded = header.encode()
        let snapshots = HeaderFieldUpdate.snapshotTableLocation(offset: header.snapshotsOffset, count: header.snapshotCount)
        #expect(snapshots.offset == 60 && snapshots.bytes.count == 12)
        #expect(snapshots.bytes == Array(snapshotsEncoded[60..<72]))
        let count = HeaderFieldUpdate.snapshotCount(header.snapshotCount)
        #expect(count.offset == 60 && count.bytes == Array(snapshotsEncoded[60..<64]))

        let size = HeaderFieldUpdate.size(header.size)
        #expect(size.offset == 24 && size.bytes.count == 8)
        #expect(size.bytes == slice(size))
    }
}
