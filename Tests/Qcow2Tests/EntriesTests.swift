// L1/L2 entry bits, compressed cluster descriptors and subcluster bitmaps.
import Testing
@testable import Qcow2

@Suite struct EntriesTests {
    @Test func l1Entry() {
        let e = L1Entry(l2Offset: 0x5_0000, copied: true)
        #expect(e.rawValue == 0x8000_0000_0005_0000)
        #expect(e.l2Offset == 0x5_0000)
        #expect(e.isCopied)
        #expect(!e.hasReservedBits)
        #expect(L1Entry(rawValue: 0).l2Offset == 0)
        // Bits 0-8 and 56-62 are reserved; bits 9-55 are the offset.
        for bit in [0, 8, 56, 62] { #expect(L1Entry(rawValue: 1 << UInt64(bit)).hasReservedBits, "bit \(bit)") }
        for bit in [9, 55, 63] { #expect(!L1Entry(rawValue: 1 << UInt64(bit)).hasReservedBits, "bit \(bit)") }
        #expect(L1Entry(rawValue: UInt64.max).l2Offset == 0x00ff_ffff_ffff_fe00)
    }

    @Test func standardL2Classification() {
        let bits: UInt32 = 16
        #expect(L2Entry.unallocated.type(clusterBits: bits) == .unallocated)
        #expect(L2Entry(rawValue: 1).type(clusterBits: bits) == .zeroPlain)
        #expect(L2Entry(rawValue: 0x8000_0000_0007_0001).type(clusterBits: bits) == .zeroAllocated(hostOffset: 0x7_0000))
        #expect(L2Entry(rawValue: 0x8000_0000_0007_0000).type(clusterBits: bits) == .normal(hostOffset: 0x7_0000))
        #expect(L2Entry(rawValue: 0x0000_0000_0007_0000).type(clusterBits: bits) == .normal(hostOffset: 0x7_0000))
        // A compressed entry's low bit belongs to its host offset, not a zero flag.
        let compressed = L2Entry(rawValue: Qcow2EntryMask.compressed | 0x7_0001)
        #expect(!compressed.hasZeroFlag)
        #expect(compressed.type(clusterBits: bits) == .compressed(CompressedClusterDescriptor(hostOffset: 0x7_0001, sectorCount: 1)))
        #expect(L2Entry.normal(hostOffset: 0x7_0000).rawValue == 0x8000_0000_0007_0000)
        #expect(L2Entry.normal(hostOffset: 0x7_0000, copied: false).rawValue == 0x7_0000)
    }

    @Test func l2ReservedBits() {
        for bit in [1, 8, 56, 61] { #expect(L2Entry(rawValue: 1 << UInt64(bit)).hasReservedBits, "bit \(bit)") }
        for bit in [0, 9, 55, 62, 63] { #expect(!L2Entry(rawValue: 1 << UInt64(bit)).hasReservedBits, "bit \(bit)") }
    }

    @Test func extendedL2IgnoresTheZeroFlag() {
        let entry = L2Entry(rawValue: 0x8000_0000_0007_0001)
        #expect(entry.type(clusterBits: 16, extendedL2: true) == .normal(hostOffset: 0x7_0000))
        #expect(L2Entry(rawValue: 1).type(clusterBits: 16, extendedL2: true) == .unallocated)
    }

    @Test(arguments: 9...21)
    func compressedDescriptorSplit(_ clusterBits: UInt32) {
        let x = 62 - (UInt64(clusterBits) - 8)
        #expect(CompressedClusterDescriptor.offsetBits(clusterBits: clusterBits) == x)
        let maxSectors = CompressedClusterDescriptor.maxSectorCount(clusterBits: clusterBits)
        #expect(maxSectors == UInt64(1) << (UInt64(clusterBits) - 8))
        // The largest offset and sector count the fields hold survive a round trip.
        let maxOffset = (UInt64(1) << x) - 1
        for (offset, sectors) in [(UInt64(0x1234_5600 + 17), UInt64(1)), (maxOffset, maxSectors), (512, maxSectors / 2 + 1)] {
            let d = CompressedClusterDescriptor(hostOffset: offset, sectorCount: sectors)
            let entry = d.entry(clusterBits: clusterBits)
            #expect(entry.isCompressed)
            #expect(!entry.isCopied)
            #expect(CompressedClusterDescriptor(entry: entry, clusterBits: clusterBits) == d)
            #expect(entry.type(clusterBits: clusterBits) == .compressed(d))
        }
        // The copied flag (never set by QEMU, but possible on disk) is not part of the descriptor.
        let withCopied = L2Entry(rawValue: CompressedClusterDescriptor(hostOffset: 4096, sectorCount: 2)
            .entry(clusterBits: clusterBits).rawValue | Qcow2EntryMask.copied)
        #expect(CompressedClusterDescriptor(entry: withCopied, clusterBits: clusterBits)
            == CompressedClusterDescriptor(hostOffset: 4096, sectorCount: 2))
    }

    @Test func compressedByteLength() {
        // From the offset to the end of the last sector it touches.
        #expect(CompressedClusterDescriptor(hostOffset: 0x1_0000, sectorCount: 1).byteLength == 512)
        #expect(CompressedClusterDescriptor(hostOffset: 0x1_0010, sectorCount: 1).byteLength == 496)
        #expect(CompressedClusterDescriptor(hostOffset: 0x1_01ff, sectorCount: 3).byteLength == 1025)
    }

    @Test func compressedDescriptorFromLength() {
        // As QEMU counts: the sectors holding the first and the last byte, and all between.
        #expect(CompressedClusterDescriptor(hostOffset: 0x1_0000, compressedLength: 512).sectorCount == 1)
        #expect(CompressedClusterDescriptor(hostOffset: 0x1_0000, compressedLength: 513).sectorCount == 2)
        #expect(CompressedClusterDescriptor(hostOffset: 0x1_01ff, compressedLength: 2).sectorCount == 2)
        #expect(CompressedClusterDescriptor(hostOffset: 0x1_0100, compressedLength: 100).sectorCount == 1)
        // A cluster's worth of data at an unaligned offset still fits the field.
        for bits: UInt32 in 9...21 {
            let d = CompressedClusterDescriptor(hostOffset: 0x1_0001, compressedLength: (UInt64(1) << UInt64(bits)) - 1)
            #expect(d.sectorCount <= CompressedClusterDescriptor.maxSectorCount(clusterBits: bits))
        }
    }

    @Test func subclusterBitmap() {
        let b = SubclusterBitmap(rawValue: 0x0000_0010_8000_0001)
        #expect(b.allocatedMask == 0x8000_0001)
        #expect(b.zeroMask == 0x10)
        #expect(b.isAllocated(0) && b.isAllocated(31) && !b.isAllocated(1))
        #expect(b.readsAsZero(4) && !b.readsAsZero(0))
        #expect(b.isValid)
        #expect(!SubclusterBitmap(rawValue: 0x0000_0001_0000_0001).isValid)
    }

    @Test func subclusterTypesWithExtendedL2() {
        let normal = L2Entry.normal(hostOffset: 0x7_0000)
        let unallocated = L2Entry.unallocated
        // Subcluster 0 allocated, 1 zero, 2 neither.
        let bitmap = SubclusterBitmap(rawValue: 0x0000_0002_0000_0001)
        func type(_ e: L2Entry, _ b: SubclusterBitmap, _ i: Int) -> SubclusterType {
            e.subclusterType(bitmap: b, index: i, clusterBits: 16, extendedL2: true)
        }
        #expect(type(normal, bitmap, 0) == .normal)
        #expect(type(normal, bitmap, 1) == .zeroAllocated)
        #expect(type(normal, bitmap, 2) == .unallocatedAllocated)
        #expect(type(unallocated, SubclusterBitmap(rawValue: 0x0000_0002_0000_0000), 1) == .zeroPlain)
        #expect(type(unallocated, SubclusterBitmap(rawValue: 0x0000_0002_0000_0000), 2) == .unallocatedPlain)
        // Allocated without a host cluster, or allocated and zero: invalid, whichever subcluster is asked about.
        #expect(type(unallocated, bitmap, 2) == .invalid)
        #expect(type(normal, SubclusterBitmap(rawValue: 0x0000_0001_0000_0001), 5) == .invalid)
        let compressed = CompressedClusterDescriptor(hostOffset: 0x7_0200, sectorCount: 3).entry(clusterBits: 16)
        #expect(type(compressed, SubclusterBitmap(rawValue: 0), 7) == .compressed)
    }

    @Test func subclusterTypesWithoutExtendedL2() {
        func type(_ raw: UInt64) -> SubclusterType {
            L2Entry(rawValue: raw).subclusterType(bitmap: SubclusterBitmap(rawValue: UInt64.max), index: 0,
                                                  clusterBits: 16, extendedL2: false)
        }
        #expect(type(0) == .unallocatedPlain)
        #expect(type(1) == .zeroPlain)
        #expect(type(0x8000_0000_0007_0001) == .zeroAllocated)
        #expect(type(0x8000_0000_0007_0000) == .normal)
        #expect(type(Qcow2EntryMask.compressed | 0x7_0000) == .compressed)
    }
}
