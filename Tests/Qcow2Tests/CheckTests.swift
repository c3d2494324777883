// The check in-process, on hand-built images: what it finds, what each
// repair mode changes on disk, and that hostile metadata fails cleanly.
import Foundation
import Testing
@testable import Qcow2

@Suite("qcow2 check")
struct CheckTests {
    @Test("a clean image: no findings, allocation figures, end offset",
          arguments: [(UInt32(9), UInt32(4)), (16, 0), (16, 4), (16, 6), (21, 3)])
    func clean(_ geometry: (clusterBits: UInt32, refcountOrder: UInt32)) throws {
        let image = CheckTestImage(clusterBits: geometry.clusterBits, refcountOrder: geometry.refcountOrder)
        let file = try CheckTestFile(image)
        let (result, messages) = try file.check()
        #expect(messages.isEmpty)
        #expect(result.corruptions == 0 && result.leaks == 0 && result.checkErrors == 0)
        #expect(result.fragmentation.allocatedClusters == 3)
        #expect(result.fragmentation.fragmentedClusters == 0)
        #expect(result.imageEndOffset == 8 * Int64(image.clusterSize))
        let total = (Int64(image.u64(24)) + Int64(image.clusterSize) - 1) / Int64(image.clusterSize)
        #expect(result.fragmentation.totalClusters == total)
    }

    @Test("a refcount too high is a leak; -r leaks lowers it")
    func leak() throws {
        var image = CheckTestImage()
        image.setRefcount(3, 2)   // the L1 table's: no copied flag speaks for it
        let file = try CheckTestFile(image)
        let (found, messages) = try file.check()
        #expect(found.leaks == 1 && found.corruptions == 0)
        #expect(messages == ["Leaked cluster 3 refcount=2 reference=1"])

        let (repaired, repairMessages) = try file.check(.leaks)
        #expect(repaired.leaksFixed == 1 && repaired.leaks == 0)
        #expect(repairMessages == ["Leaked cluster 3 refcount=2 reference=1", "Repairing cluster 3 refcount=2 reference=1"])
        #expect(CheckTestImage.refcount(in: file.bytes, cluster: 3, clusterSize: image.clusterSize, width: image.width) == 1)
        #expect(try file.check().1.isEmpty)
    }

    @Test("a leaked cluster freed by -r leaks is discarded: it reads as zeroes")
    func freedClusterIsDiscarded() throws {
        var image = CheckTestImage()
        image.setL2(1, 0)
        let file = try CheckTestFile(image)
        #expect(file.bytes[6 * 65536] == 2)
        let (result, _) = try file.check(.leaks)
        #expect(result.leaksFixed == 1)
        let bytes = file.bytes
        #expect(bytes[(6 * 65536)..<(7 * 65536)].allSatisfy { $0 == 0 })
        #expect(bytes[5 * 65536] == 1 && bytes[7 * 65536] == 3)
    }

    @Test("a zero refcount needs a rebuild: -r leaks refuses, -r all rebuilds")
    func rebuild() throws {
        var image = CheckTestImage()
        image.setRefcount(6, 0)
        let file = try CheckTestFile(image)
        let (errno, messages) = try file.failingCheck(.leaks)
        #expect(errno == 5)
        #expect(messages == ["ERROR cluster 6 refcount=0 reference=1", "ERROR need to rebuild refcount structures"])

        let (result, rebuildMessages) = try file.check(.all)
        #expect(result.corruptionsFixed == 1 && result.corruptions == 0)
        #expect(rebuildMessages.contains("Rebuilding refcount structure"))
        // The new table and block went after the old clusters, which were freed.
        let header = try Qcow2Header.decode(file.bytes)
        #expect(header.refcountTableOffset == 9 * 65536)
        let (after, afterMessages) = try file.check()
        #expect(afterMessages.isEmpty && after.corruptions == 0 && after.leaks == 0)
    }

    @Test("a refcount too low but not zero: -r all raises it in place")
    func refcountTooLow() throws {
        var image = CheckTestImage()
        image.setL2(2, image.l2(1))   // cluster 6 referenced twice
        let file = try CheckTestFile(image)
        let (found, messages) = try file.check()
        // Cluster 6 is counted twice, cluster 7 not at all.
        #expect(found.corruptions == 1 && found.leaks == 1)
        #expect(messages.contains("ERROR cluster 6 refcount=1 reference=2"))
        #expect(messages.contains("ERROR OFLAG_COPIED data cluster: l2_entry=8000000000060000 refcount=1") == false)
        let (repaired, _) = try file.check(.all)
        #expect(repaired.corruptions == 0 && repaired.leaks == 0)
        #expect(CheckTestImage.refcount(in: file.bytes, cluster: 6, clusterSize: 65536, width: .sixteen) == 2)
        // Shared now: the copied flags went.
        #expect(file.bytes.be(UInt64.self, at: 4 * 65536 + 8) == 6 * 65536)
    }

    @Test("entries that are not cluster aligned, or point past the file")
    func badEntries() throws {
        var image = CheckTestImage()
        image.setL2(0, CheckTestImage.copied | (5 * 65536 + 0x1000))
        image.setL2(3, CheckTestImage.copied | 0x1000_0000)
        image.setL2(4, 5 * 65536 + 0x1000 | 1)   // preallocated zero cluster
        let file = try CheckTestFile(image)
        let (found, messages) = try file.check()
        #expect(messages.contains("ERROR offset=51000: Data cluster is not properly aligned; L2 entry corrupted."))
        #expect(messages.contains("ERROR offset=51000: Preallocated cluster is not properly aligned; L2 entry corrupted."))
        #expect(messages.contains("ERROR: counting reference for region exceeding the end of the file by one cluster or more: "
                                  + "offset 0x10000000 size 0x10000"))
        #expect(found.corruptions > 0)

        // -r all turns the preallocated entry into a plain zero cluster.
        let (repaired, repairMessages) = try file.check(.all)
        #expect(repairMessages.contains("Repairing offset=51000: Preallocated cluster is not properly aligned; L2 entry corrupted."))
        #expect(repaired.corruptionsFixed >= 1)
        #expect(file.bytes.be(UInt64.self, at: 4 * 65536 + 4 * 8) == 1)
    }

    @Test("1-bit refcounts overflow on a second reference")
    func overflow() throws {
        var image = CheckTestImage(refcountOrder: 0)
        image.setL2(1, image.l2(0))
        let file = try CheckTestFile(image)
        let (found, messages) = try file.check()
        #expect(messages.prefix(2) == ["ERROR: overflow cluster offset=0x50000",
                                       "Use qcowkit amend to increase the refcount entry width or qcowkit convert to "
                                       + "create a clean copy if the image cannot be opened for writing"])
        #expect(found.corruptions >= 1 && found.leaks == 1)
    }

    @Test("copied flags: reported, and set right by -r all")
    func copiedFlags() throws {
        var image = CheckTestImage()
        image.setL1(0, 4 * 65536)                              // flag missing
        image.setL2(2, image.l2(2) & ~CheckTestImage.copied)   // flag missing
        let file = try CheckTestFile(image)
        let (found, messages) = try file.check()
        #expect(found.corruptions == 2)
        #expect(messages == ["ERROR OFLAG_COPIED L2 cluster: l1_index=0 l1_entry=40000 refcount=1",
                             "ERROR OFLAG_COPIED data cluster: l2_entry=70000 refcount=1"])
        let (repaired, _) = try file.check(.all)
        #expect(repaired.corruptionsFixed == 2)
        #expect(file.bytes.be(UInt64.self, at: 3 * 65536) == CheckTestImage.copied | 4 * 65536)
        #expect(try file.check().1.isEmpty)
    }

    @Test("a repair without corruption left clears the dirty and corrupt bits")
    func headerBits() throws {
        var image = CheckTestImage()
        image.bytes[79] = 3
        image.setRefcount(5, 2)
        let file = try CheckTestFile(image)
        _ = try file.check()
        #expect(file.bytes[79] == 3)   // a check alone writes nothing
        _ = try file.check(.leaks)
        #expect(file.bytes[79] == 0)
    }

    @Test("hostile metadata: clear failures or findings, never a crash")
    func hostile() throws {
        // A refcount table entry far past any file, and one with bit 63 set.
        var farBlock = CheckTestImage()
        farBlock.setU64(65536 + 8, 0x7fff_ffff_ffff_0000)
        farBlock.setU64(65536 + 16, 0xffff_ffff_ffff_0000)
        let (found, messages) = try CheckTestFile(farBlock).check()
        #expect(messages.contains("ERROR refcount block 1 is outside image"))
        #expect(messages.contains("ERROR refcount block 2 is outside image"))
        #expect(found.corruptions == 2)

        // Too many snapshots: the check fails, as QEMU's does.
        var snapshots = CheckTestImage()
        snapshots.bytes.setBE(UInt32(70000), at: 60)
        snapshots.bytes.setBE(UInt64(65536 * 7), at: 64)
        let (errno, snapshotMessages) = try CheckTestFile(snapshots).failingCheck()
        #expect(errno == 27)
        #expect(snapshotMessages.first == "ERROR snapshot table too large")

        // A snapshot table that is not cluster aligned.
        var unaligned = CheckTestImage()
        unaligned.bytes.setBE(UInt32(1), at: 60)
        unaligned.bytes.setBE(UInt64(65536 * 7 + 8), at: 64)
        #expect(try CheckTestFile(unaligned).failingCheck().0 == 22)

        // No refcount table at all: QEMU's check opens it and finds every
        // refcount missing: six clusters in use (the table and its block no
        // longer count), and four copied flags now wrong.
        var noTable = CheckTestImage()
        noTable.bytes.setBE(UInt32(0), at: 56)
        let (rebuildNeeded, _) = try CheckTestFile(noTable).check()
        #expect(rebuildNeeded.corruptions == 10)

        // An L1 entry pointing at the highest offset an entry can hold.
        var farL2 = CheckTestImage()
        farL2.setL1(0, 0x00ff_ffff_ffff_0000)
        let (farResult, farMessages) = try CheckTestFile(farL2).check()
        #expect(farResult.corruptions >= 1)
        #expect(farMessages.first?.hasPrefix("ERROR: counting reference for region exceeding the end of the file") == true)
    }

    @Test("repairs need a writable image")
    func repairNeedsWritable() throws {
        let file = try CheckTestFile(CheckTestImage())
        let checker = try Qcow2Checker.open(path: file.path, writable: false)
        defer { try? checker.close() }
        #expect(throws: Qcow2Error.checkFailed(errno: 30)) { try checker.check(repair: .leaks) { _ in } }
    }

    @Test("a fatal corruption during a repair makes the image unusable for another check")
    func unusableAfterFatalCorruption() throws {
        var image = CheckTestImage()
        image.setL1(0, CheckTestImage.copied | 3 * 65536)   // the L2 table is the L1 table
        let file = try CheckTestFile(image)
        let checker = try Qcow2Checker.open(path: file.path, writable: true)
        defer { try? checker.close() }
        var messages: [String] = []
        #expect(throws: Qcow2Error.checkFailed(errno: 5)) { try checker.check(repair: .all) { messages.append($0.text) } }
        #expect(messages.last?.hasPrefix("qcow2: Marking image as corrupt: Preventing invalid write on metadata") == true)
        #expect(throws: Qcow2Error.checkFailed(errno: 123)) { try checker.check { _ in } }
        // The corrupt bit is on disk.
        #expect(file.bytes[79] & 2 != 0)
    }
}

@Suite("check's reference counts")
struct ReferenceCountsTests {
    @Test("allocation takes the first gap large enough, else grows the table")
    func allocate() throws {
        let counts = try ReferenceCounts(clusters: 8, width: .sixteen, clusterSize: 512)
        for i: Int64 in [0, 1, 3, 6, 7] { counts[i] = 1 }
        var firstFree: UInt64 = 0
        #expect(try counts.allocate(1, firstFree: &firstFree) == 2)
        #expect(firstFree == 2)
        firstFree = 0
        #expect(try counts.allocate(2, firstFree: &firstFree) == 4)
        firstFree = 0
        #expect(try counts.allocate(3, firstFree: &firstFree) == 8)
        #expect(counts.count == 11)
        #expect((8..<11).allSatisfy { counts[$0] == 1 })
    }

    @Test("storage is whole clusters, so each cluster of it is a refcount block")
    func blocks() throws {
        let counts = try ReferenceCounts(clusters: 300, width: .sixteen, clusterSize: 512)
        counts[256] = 7
        let block = counts.refcountBlock(1)
        #expect(block.count == 512)
        #expect(RefcountCoding.get(block, index: 0, width: .sixteen) == 7)
    }

    @Test("increment stops at the width's maximum, for every width", arguments: 0...6 as ClosedRange<UInt32>)
    func increment(order: UInt32) throws {
        let width = try RefcountWidth(order: order)
        let counts = try ReferenceCounts(clusters: 100, width: width, clusterSize: 512)
        counts[41] = width.maxValue - 1
        #expect(counts.increment(41))
        #expect(counts[41] == width.maxValue)
        #expect(!counts.increment(41))
        #expect(counts[41] == width.maxValue)
        // Neighbours (the same byte, for narrow widths) are untouched.
        #expect(counts[40] == 0 && counts[42] == 0)
        #expect(counts.increment(40) && counts[40] == 1 && counts[41] == width.maxValue)
    }

    @Test("the last non-zero count of a block, for every width", arguments: 0...6 as ClosedRange<UInt32>)
    func lastNonZero(order: UInt32) throws {
        let width = try RefcountWidth(order: order)
        let perBlock = Int64(512 * 8) >> Int64(order)
        let counts = try ReferenceCounts(clusters: 3 * perBlock, width: width, clusterSize: 512)
        #expect(counts.lastNonZero(inBlock: 0) == nil)
        counts[3] = 1
        #expect(counts.lastNonZero(inBlock: 0) == 3)
        counts[perBlock - 2] = 1
        #expect(counts.lastNonZero(inBlock: 0) == perBlock - 2)
        counts[perBlock - 1] = 1
        #expect(counts.lastNonZero(inBlock: 0) == perBlock - 1)
        #expect(counts.lastNonZero(inBlock: 1) == nil)
        counts[2 * perBlock + 5] = 1
        #expect(counts.lastNonZero(inBlock: 2) == 2 * perBlock + 5)
    }

    @Test("impossible sizes fail as QEMU's allocation does, with ENOMEM")
    func tooLarge() throws {
        let counts = try ReferenceCounts(clusters: 1, width: .sixteen, clusterSize: 65536)
        #expect(throws: CheckFailure(errno: 12)) { try counts.resize(to: 1 << 42) }
    }
}
