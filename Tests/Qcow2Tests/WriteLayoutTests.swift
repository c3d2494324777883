// Where the write path puts things: QEMU's placement of L2 tables, data
// clusters, refcount blocks and tables, and in-place rewrites.
import Foundation
import Testing
@testable import Qcow2

@Suite("Write path: layout")
struct WriteLayoutTests {
    let copied = Qcow2EntryMask.copied

    @Test("one 64 KiB write at 1 MiB of a fresh 64 MiB image: L2 table at 0x40000, data at 0x50000")
    func firstWrite() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 64 << 20)
        let image = try WriteFixture.openWritable(path)
        let data = WriteFixture.pattern(1, count: 65536)
        try WriteFixture.write(image, data, at: 1 << 20)
        #expect(image.clusterMap.lock.withLock { $0.tables.l1[0] } == 0x40000 | copied)
        #expect(try WriteFixture.l2Entry(image, at: 1 << 20)?.entry == 0x50000 | copied)
        for cluster: UInt64 in 0...5 { #expect(try WriteFixture.refcount(image, ofCluster: cluster) == 1) }
        #expect(try WriteFixture.refcount(image, ofCluster: 6) == 0)
        #expect(try image.read(65536, at: 1 << 20) == data)
        try WriteFixture.expectConsistent(image)
        try image.close()
        #expect(try WriteFixture.fileSize(path) == 393216)
        let reopened = try Qcow2Image.open(path: path)
        #expect(try reopened.read(65536, at: 1 << 20) == data)
        #expect(try reopened.read(4096, at: (1 << 20) - 4096) == [UInt8](repeating: 0, count: 4096))
    }

    @Test("a multi-cluster write gets one contiguous run, up to the end of its L2 table",
          arguments: [UInt64(512), 4096, 65536])
    func contiguousRun(clusterSize: UInt64) throws {
        let dir = try TestDirectory()
        let entries = clusterSize / 8
        let path = try WriteFixture.create(dir, size: 2 * entries * clusterSize, clusterSize: clusterSize)
        let image = try WriteFixture.openWritable(path)
        defer { try? image.close() }
        // Start three clusters before the end of the first L2 table, write six.
        let start = (entries - 3) * clusterSize + 100
        let data = WriteFixture.pattern(2, count: Int(5 * clusterSize))
        try WriteFixture.write(image, data, at: start)
        var hosts: [UInt64] = []
        for i in 0..<6 {
            let entry = try #require(try WriteFixture.l2Entry(image, at: start + UInt64(i) * clusterSize)?.entry)
            #expect(entry & copied != 0)
            hosts.append(entry & Qcow2EntryMask.offset)
        }
        // The first table's three clusters are contiguous; the second L2 table
        // comes right after them, then the other three clusters.
        #expect(hosts[1] == hosts[0] + clusterSize && hosts[2] == hosts[1] + clusterSize)
        #expect(hosts[4] == hosts[3] + clusterSize && hosts[5] == hosts[4] + clusterSize)
        let secondTable = image.clusterMap.lock.withLock { $0.tables.l1[1] } & Qcow2EntryMask.offset
        #expect(secondTable == hosts[2] + clusterSize)
        #expect(hosts[3] == secondTable + clusterSize)
        #expect(try image.read(data.count, at: start) == data)
        try WriteFixture.expectConsistent(image)
    }

    @Test("rewriting allocated clusters goes in place")
    func inPlace() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 8 << 20, clusterSize: 4096)
        let image = try WriteFixture.openWritable(path)
        try WriteFixture.write(image, WriteFixture.pattern(3, count: 20000), at: 5000)
        let before = try #require(try WriteFixture.l2Entry(image, at: 8192)?.entry)
        try image.flush()
        let size = try WriteFixture.fileSize(path)
        let data = WriteFixture.pattern(4, count: 3000)
        try WriteFixture.write(image, data, at: 9000)
        #expect(try WriteFixture.l2Entry(image, at: 8192)?.entry == before)
        try image.close()
        #expect(try WriteFixture.fileSize(path) == size)
        var model = GuestModel(size: 30000)
        model.write(WriteFixture.pattern(3, count: 20000), at: 5000)
        model.write(data, at: 9000)
        #expect(try Qcow2Image.open(path: path).read(30000, at: 0) == model.bytes)
    }

    @Test("writes at every alignment read back, untouched bytes stay zero",
          arguments: [(UInt64(512), false), (4096, false), (65536, false), (65536, true)])
    func everyAlignment(clusterSize: UInt64, extendedL2: Bool) throws {
        let dir = try TestDirectory()
        let cs = clusterSize
        let offsets: [UInt64] = [0, 1, 511, cs - 1, cs, cs + 1, 3 * cs - 7]
        let lengths: [UInt64] = [1, 511, 512, cs - 1, cs, cs + 1, 3 * cs + 5]
        let path = try WriteFixture.create(dir, size: 16 * cs, clusterSize: cs, extendedL2: extendedL2)
        for (i, offset) in offsets.enumerated() {
            for (j, length) in lengths.enumerated() {
                // A fresh image per case, so that each write allocates.
                let copy = dir.file("c\(i)-\(j).qcow2")
                try FileManager.default.copyItem(atPath: path, toPath: copy)
                let image = try WriteFixture.openWritable(copy)
                let data = WriteFixture.pattern(UInt8(i * 8 + j), count: Int(length))
                try WriteFixture.write(image, data, at: offset)
                var model = GuestModel(size: 16 * cs)
                model.write(data, at: offset)
                let window = Int(offset + length + cs)
                #expect(try image.read(window, at: 0) == Array(model.bytes[0..<window]), "offset \(offset) length \(length)")
                try WriteFixture.expectConsistent(image)
                try image.close()
                try FileManager.default.removeItem(atPath: copy)
            }
        }
    }

    @Test("L2 tables are allocated as writes reach new L1 entries, refcounts first")
    func l2Allocation() throws {
        let dir = try TestDirectory()
        // 512-byte clusters: one L2 table maps 32 KiB.
        let path = try WriteFixture.create(dir, size: 1 << 20, clusterSize: 512)
        let image = try WriteFixture.openWritable(path)
        for i: UInt64 in [0, 5, 3, 31] {
            try WriteFixture.write(image, WriteFixture.pattern(UInt8(i), count: 512), at: i * 32768 + 1024)
        }
        let l1 = image.clusterMap.lock.withLock { $0.tables.l1 }
        #expect(l1.filter { $0 != 0 }.count == 4)
        for index in [0, 5, 3, 31] {
            #expect(l1[index] & copied != 0)
            #expect(try WriteFixture.refcount(image, ofCluster: (l1[index] & Qcow2EntryMask.offset) >> 9) == 1)
        }
        // Each table is followed by the data cluster written through it.
        #expect(try WriteFixture.l2Entry(image, at: 5 * 32768 + 1024)?.entry == (l1[5] & Qcow2EntryMask.offset) + 512 | copied)
        try WriteFixture.expectConsistent(image)
        try image.close()
    }

    @Test("refcount blocks and the refcount table grow with the file, with every width",
          arguments: [UInt64(1), 2, 4, 8, 16, 32, 64])
    func refcountGrowth(refcountBits: UInt64) throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 64 << 20, clusterSize: 512, refcountBits: refcountBits)
        let before = try WriteFixture.header(path)
        let image = try WriteFixture.openWritable(path)
        // 3 MiB of 512-byte clusters: thousands of clusters, L2 tables and
        // (for wide refcounts) many refcount blocks and a larger table.
        var model = GuestModel(size: 4 << 20)
        for i in 0..<24 {
            let data = WriteFixture.pattern(UInt8(i), count: 131072)
            try WriteFixture.write(image, data, at: UInt64(i) * 131072 + 77)
            model.write(data, at: UInt64(i) * 131072 + 77)
        }
        try WriteFixture.expectConsistent(image)
        try image.close()
        let after = try WriteFixture.header(path)
        // 64 refcount blocks fit one 512-byte table cluster; each covers
        // 4096 / bits clusters.
        let blocksNeeded = divideRoundingUp(try WriteFixture.fileSize(path) / 512, 4096 / refcountBits)
        if blocksNeeded > 64 {
            #expect(after.refcountTableOffset != before.refcountTableOffset)
            #expect(after.refcountTableClusters > 1)
        }
        let reopened = try Qcow2Image.open(path: path)
        #expect(try reopened.read(model.bytes.count, at: 0) == model.bytes)
    }
}
