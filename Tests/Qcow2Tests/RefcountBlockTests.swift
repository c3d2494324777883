import Testing
@testable import Qcow2

@Suite struct RefcountWidthTests {
    @Test(arguments: [(UInt64(1), UInt32(0)), (2, 1), (4, 2), (8, 3), (16, 4), (32, 5), (64, 6)])
    func widthsFromBits(bits: UInt64, order: UInt32) throws {
        let width = try #require(RefcountWidth(bits: bits))
        #expect(width.order == order)
        #expect(width.bits == bits)
        #expect(width == (try RefcountWidth(order: order)))
    }

    @Test(arguments: [UInt64(0), 3, 6, 12, 24, 48, 65, 128, .max])
    func invalidBits(bits: UInt64) {
        #expect(RefcountWidth(bits: bits) == nil)
    }

    @Test func orderAboveSixIsRefused() {
        #expect(throws: Qcow2Error.refcountWidthTooLarge(order: 7)) { try RefcountWidth(order: 7) }
    }

    @Test func maxValuesAndEntriesPerBlock() throws {
        let expectedMax: [UInt64] = [1, 3, 15, 255, 65535, 0xffff_ffff, .max]
        for order in UInt32(0)...6 {
            let width = try RefcountWidth(order: order)
            #expect(width.maxValue == expectedMax[Int(order)])
            #expect(width.entriesPerBlock(clusterSize: 65536) == 65536 * 8 / width.bits)
        }
        #expect(RefcountWidth.sixteen.entriesPerBlock(clusterSize: 512) == 256)
        #expect(try RefcountWidth(order: 0).byteCount(entries: 9) == 2)
    }
}

@Suite struct RefcountBlockTests {
    static let orders: [UInt32] = [0, 1, 2, 3, 4, 5, 6]

    @Test(arguments: orders)
    func roundTripsEveryEntryWithoutTouchingNeighbours(order: UInt32) throws {
        let width = try RefcountWidth(order: order)
        var block = RefcountBlock(clusterSize: 512, width: width)
        #expect(block.entryCount == 4096 >> Int(order))
        #expect(block.isEmpty)
        // A value pattern that uses every bit of the entry somewhere.
        func value(_ i: Int) -> UInt64 { (UInt64(i) &* 0x9E37_79B9_7F4A_7C15) & width.maxValue }
        for i in 0..<block.entryCount { block[i] = value(i) }
        for i in 0..<block.entryCount { #expect(block[i] == value(i)) }
        // Rewriting one entry changes nothing else.
        let target = block.entryCount / 2 + 1
        let before = block
        block[target] = width.maxValue - value(target)
        for i in 0..<block.entryCount where i != target { #expect(block[i] == before[i]) }
        #expect(block[target] == width.maxValue - value(target))
    }

    @Test(arguments: orders)
    func maxValueFitsAndClears(order: UInt32) throws {
        let width = try RefcountWidth(order: order)
        var block = RefcountBlock(clusterSize: 512, width: width)
        block[3] = width.maxValue
        #expect(block[3] == width.maxValue)
        #expect(block[2] == 0 && block[4] == 0)
        block[3] = 0
        #expect(block.isEmpty)
    }

    /// The on-disk layout: narrow entries from the least significant bit of
    /// each byte, wide ones big-endian.
    @Test func byteLayout() throws {
        var one = RefcountBlock(clusterSize: 512, width: try RefcountWidth(order: 0))
        one[0] = 1; one[3] = 1; one[9] = 1
        #expect(Array(one.bytes.prefix(2)) == [0b0000_1001, 0b0000_0010])

        var two = RefcountBlock(clusterSize: 512, width: try RefcountWidth(order: 1))
        two[0] = 3; two[1] = 1; two[3] = 2
        #expect(two.bytes[0] == 0b1000_0111)

        var four = RefcountBlock(clusterSize: 512, width: try RefcountWidth(order: 2))
        four[0] = 0xa; four[1] = 0x5
        #expect(four.bytes[0] == 0x5a)

        var sixteen = RefcountBlock(clusterSize: 512, width: .sixteen)
        sixteen[1] = 0x1234
        #expect(Array(sixteen.bytes.prefix(4)) == [0, 0, 0x12, 0x34])

        var thirtyTwo = RefcountBlock(clusterSize: 512, width: try RefcountWidth(order: 5))
        thirtyTwo[0] = 0x0102_0304
        #expect(Array(thirtyTwo.bytes.prefix(4)) == [1, 2, 3, 4])

        var sixtyFour = RefcountBlock(clusterSize: 512, width: try RefcountWidth(order: 6))
        sixtyFour[1] = 0x0102_0304_0506_0708
        #expect(Array(sixtyFour.bytes[8..<16]) == [1, 2, 3, 4, 5, 6, 7, 8])
    }

    @Test func codingReadsBlocksFromRawBuffers() throws {
        let width = try RefcountWidth(order: 2)
        let bytes: [UInt8] = [0x21, 0x43]
        let values = bytes.withUnsafeBytes { buffer in (0..<4).map { RefcountCoding.get(buffer, index: $0, width: width) } }
        #expect(values == [1, 2, 3, 4])
    }
}

@Suite struct RefcountTableTests {
    @Test func encodesAndDecodesEntries() {
        let table = RefcountTable(entries: [0x20000, 0, 0x1_0000_0000, 0])
        let bytes = table.encode()
        #expect(bytes.count == 32)
        #expect(Array(bytes[0..<8]) == [0, 0, 0, 0, 0, 2, 0, 0])
        #expect(RefcountTable(bytes: bytes) == table)
        #expect(table.blockOffset(at: 2) == 0x1_0000_0000)
        #expect(table.blockOffset(at: 9) == 0)
        #expect(table.lastUsedIndex == 2)
        #expect(table.encode(2..<3) == Array(bytes[16..<24]))
        #expect(RefcountTable(clusters: 1, clusterSize: 512).count == 64)
        #expect(RefcountTable(entries: [0, 0]).lastUsedIndex == 0)
    }

    /// qcow2_refcount_metadata_size: the fixed point of blocks and table.
    @Test func metadataSize() throws {
        // 64 KiB clusters, 16-bit refcounts: one block covers 32768 clusters.
        var r = RefcountMetadata.size(clusters: 1000, clusterSize: 65536, width: .sixteen, generousIncrease: false)
        #expect(r.refblockCount == 1 && r.bytes == 2 * 65536)
        r = RefcountMetadata.size(clusters: 32767, clusterSize: 65536, width: .sixteen, generousIncrease: false)
        #expect(r.refblockCount == 2)  // 32767 + 1 block + 1 table cluster needs a second block
        // 512-byte clusters, 1-bit refcounts: 4096 clusters per block, 64 blocks per table cluster.
        let one = try RefcountWidth(order: 0)
        r = RefcountMetadata.size(clusters: 1 << 20, clusterSize: 512, width: one, generousIncrease: false)
        #expect(r.refblockCount == 257)
        #expect(r.bytes == (257 + 5) * 512)
        let generous = RefcountMetadata.size(clusters: 1 << 20, clusterSize: 512, width: one, generousIncrease: true)
        #expect(generous.refblockCount >= r.refblockCount)
    }
}
