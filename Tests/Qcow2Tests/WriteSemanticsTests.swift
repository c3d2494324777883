// What the write path's operations do to the metadata: copy-on-write of
// shared clusters, subclusters, zero writes, discards, compressed writes.
import Foundation
import Testing
@testable import Qcow2

@Suite("Write path: semantics")
struct WriteSemanticsTests {
    let copied = Qcow2EntryMask.copied
    let mask = Qcow2EntryMask.offset

    /// The L2 entry mapping `offset` (0 when there is no table).
    private func entry(_ image: Qcow2Image, _ offset: UInt64) throws -> UInt64 {
        try WriteFixture.l2Entry(image, at: offset)?.entry ?? 0
    }

    /// Makes guest cluster 1 share guest cluster 0's host cluster (refcount
    /// 2, no COPIED flags), as a snapshot or deduplication would.
    private func shareCluster(_ image: Qcow2Image, clusterSize: UInt64) throws -> UInt64 {
        try image.withWriter { writer, _ in
            let (table, index) = try writer.clusterTable(for: 0)
            let host = table.entry(index) & mask
            table.setEntry(index, host)
            table.setEntry(index + 1, host)
            table.isDirty = true
            try writer.allocator.updateRefcount(offset: host, length: 1, addend: 1, decrease: false, type: .never)
            return host
        }
    }

    @Test("a shared cluster is copied on write; refcounts follow, and so does COPIED")
    func copyOnWriteOfSharedCluster() throws {
        let dir = try TestDirectory()
        let cs: UInt64 = 4096
        let path = try WriteFixture.create(dir, size: 1 << 20, clusterSize: cs)
        let image = try WriteFixture.openWritable(path)
        let original = WriteFixture.pattern(1, count: Int(cs))
        try WriteFixture.write(image, original, at: 0)
        let shared = try shareCluster(image, clusterSize: cs)
        #expect(try WriteFixture.refcount(image, ofCluster: shared / cs) == 2)

        // A partial write to guest cluster 1: new cluster, old data around it.
        let patch = WriteFixture.pattern(2, count: 100)
        try WriteFixture.write(image, patch, at: cs + 1000)
        let newEntry = try #require(try WriteFixture.l2Entry(image, at: cs)?.entry)
        #expect(newEntry & mask != shared && newEntry & copied != 0)
        #expect(try WriteFixture.refcount(image, ofCluster: shared / cs) == 1)
        #expect(try WriteFixture.refcount(image, ofCluster: (newEntry & mask) / cs) == 1)
        var expected = original
        expected.replaceSubrange(1000..<1100, with: patch)
        #expect(try image.read(Int(cs), at: cs) == expected)
        #expect(try image.read(Int(cs), at: 0) == original)

        // Guest cluster 0 still lacks COPIED, so it is copied too, and the
        // old cluster is freed.
        try WriteFixture.write(image, patch, at: 0)
        let first = try #require(try WriteFixture.l2Entry(image, at: 0)?.entry)
        #expect(first & mask != shared && first & copied != 0)
        #expect(try WriteFixture.refcount(image, ofCluster: shared / cs) == 0)
        try WriteFixture.expectConsistent(image)
        try image.close()
    }

    @Test("extended L2: only touched subclusters are allocated; copy-on-write stays within them")
    func subclusters() throws {
        let dir = try TestDirectory()
        let cs: UInt64 = 65536, sc: UInt64 = 2048
        let path = try WriteFixture.create(dir, size: 4 << 20, clusterSize: cs, extendedL2: true)
        let image = try WriteFixture.openWritable(path)
        // Subclusters 2 and 3, partly: 2 from its middle, 3 entirely.
        try WriteFixture.write(image, WriteFixture.pattern(1, count: Int(sc + 1000)), at: 2 * sc + 1048)
        var entry = try #require(try WriteFixture.l2Entry(image, at: 0))
        #expect(entry.bitmap == 0b1100)
        #expect(entry.entry & copied != 0)
        // Subcluster 2's head was filled with zeroes; the rest of the cluster was not written.
        #expect(try image.read(Int(sc), at: 2 * sc).prefix(1048) == [UInt8](repeating: 0, count: 1048)[...])
        // A zero write of subcluster 5 sets its zero bit, leaving the others.
        try image.writeZeroes(at: 5 * sc, length: sc, mayUnmap: false)
        entry = try #require(try WriteFixture.l2Entry(image, at: 0))
        #expect(entry.bitmap == 0b1100 | (UInt64(1) << 37))
        // Writing into it allocates it again and clears the zero bit.
        try WriteFixture.write(image, [1, 2, 3], at: 5 * sc + 10)
        entry = try #require(try WriteFixture.l2Entry(image, at: 0))
        #expect(entry.bitmap == 0b10_1100)
        #expect(try image.read(13, at: 5 * sc) == [UInt8](repeating: 0, count: 10) + [1, 2, 3])
        try WriteFixture.expectConsistent(image)
        try image.close()
        // The file ends with the last written subcluster.
        #expect(try WriteFixture.fileSize(path) == 0x50000 + 6 * sc)
    }

    @Test("zero writes: zero flags, unmapping, real zeroes for partial clusters")
    func zeroWrites() throws {
        let dir = try TestDirectory()
        let cs: UInt64 = 4096
        let path = try WriteFixture.create(dir, size: 1 << 20, clusterSize: cs)
        let image = try WriteFixture.openWritable(path)
        try WriteFixture.write(image, WriteFixture.pattern(1, count: Int(8 * cs)), at: 0)
        let host1 = try #require(try WriteFixture.l2Entry(image, at: cs)?.entry) & mask
        let host2 = try #require(try WriteFixture.l2Entry(image, at: 2 * cs)?.entry) & mask
        try image.writeZeroes(at: cs, length: cs, mayUnmap: false)
        try image.writeZeroes(at: 2 * cs, length: cs, mayUnmap: true)
        // Kept allocated behind the zero flag / freed.
        #expect(try WriteFixture.l2Entry(image, at: cs)?.entry == host1 | copied | 1)
        #expect(try WriteFixture.l2Entry(image, at: 2 * cs)?.entry == 1)
        #expect(try WriteFixture.refcount(image, ofCluster: host1 / cs) == 1)
        #expect(try WriteFixture.refcount(image, ofCluster: host2 / cs) == 0)
        // Partial clusters with data get real zeroes.
        try image.writeZeroes(at: 4 * cs + 100, length: cs, mayUnmap: true)
        #expect(try entry(image, 4 * cs) & 1 == 0)
        // A partial zero write where the rest already reads as zeroes becomes a flag.
        try image.writeZeroes(at: 20 * cs + 100, length: 200, mayUnmap: false)
        #expect(try WriteFixture.l2Entry(image, at: 20 * cs)?.entry == 1)
        var model = GuestModel(size: 1 << 20)
        model.write(WriteFixture.pattern(1, count: Int(8 * cs)), at: 0)
        model.zero(cs, 2 * cs)
        model.zero(4 * cs + 100, cs)
        #expect(try image.read(model.bytes.count, at: 0) == model.bytes)
        try WriteFixture.expectConsistent(image)
        try image.close()
    }

    @Test("compat=0.10: zero writes without a backing file discard")
    func zeroWritesVersion2() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 1 << 20, clusterSize: 4096, version: 2)
        let image = try WriteFixture.openWritable(path)
        try WriteFixture.write(image, WriteFixture.pattern(1, count: 8192), at: 0)
        try image.writeZeroes(at: 0, length: 4096, mayUnmap: false)
        #expect(try WriteFixture.l2Entry(image, at: 0)?.entry == 0)
        #expect(try image.read(8192, at: 0) == [UInt8](repeating: 0, count: 4096) + WriteFixture.pattern(1, count: 8192)[4096...])
        try WriteFixture.expectConsistent(image)
        try image.close()
    }

    @Test("discards: whole clusters only, zero flag or unallocated, holes punched")
    func discards() throws {
        let dir = try TestDirectory()
        let cs: UInt64 = 65536
        let path = try WriteFixture.create(dir, size: 8 << 20, clusterSize: cs)
        let image = try WriteFixture.openWritable(path)
        try WriteFixture.write(image, WriteFixture.pattern(1, count: Int(4 * cs)), at: 0)
        let host = try #require(try WriteFixture.l2Entry(image, at: cs)?.entry) & mask
        // [cs/2, 3cs + 1): only clusters 1 and 2 are whole.
        try image.discard(at: cs / 2, length: 5 * cs / 2 + 1)
        #expect(try entry(image, 0) & mask != 0)
        #expect(try WriteFixture.l2Entry(image, at: cs)?.entry == 1)
        #expect(try WriteFixture.l2Entry(image, at: 2 * cs)?.entry == 1)
        #expect(try entry(image, 3 * cs) & mask != 0)
        #expect(try WriteFixture.refcount(image, ofCluster: host / cs) == 0)
        // The freed clusters are holes in the file now.
        let file = try BlockFile(path: path, writable: false)
        #expect(file.nextData(from: host).map { $0 >= host + 2 * cs } ?? true)
        var model = GuestModel(size: 4 * cs)
        model.write(WriteFixture.pattern(1, count: Int(4 * cs)), at: 0)
        model.zero(cs, 2 * cs)
        #expect(try image.read(model.bytes.count, at: 0) == model.bytes)
        try WriteFixture.expectConsistent(image)
        try image.close()
    }

    @Test("compressed writes share host clusters, unless refcounts are too narrow",
          arguments: [(UInt64(16), true), (1, false)])
    func compressedPacking(refcountBits: UInt64, shares: Bool) throws {
        let dir = try TestDirectory()
        let cs: UInt64 = 65536
        let path = try WriteFixture.create(dir, size: 8 << 20, clusterSize: cs, refcountBits: refcountBits)
        let image = try WriteFixture.openWritable(path)
        for i: UInt64 in 0..<3 {
            try [UInt8](repeating: UInt8(i + 1), count: Int(cs)).withUnsafeBytes { try image.writeCompressed($0, at: i * cs) }
        }
        let descriptors = try (0..<3).map { i -> CompressedClusterDescriptor in
            let entry = try #require(try WriteFixture.l2Entry(image, at: UInt64(i) * cs)?.entry)
            #expect(entry & Qcow2EntryMask.compressed != 0 && entry & copied == 0)
            return CompressedClusterDescriptor(entry: L2Entry(rawValue: entry), clusterBits: 16)
        }
        let hostClusters = Set(descriptors.map { $0.hostOffset / cs })
        #expect(hostClusters.count == (shares ? 1 : 3))
        if shares {
            #expect(descriptors[1].hostOffset > descriptors[0].hostOffset)
            #expect(try WriteFixture.refcount(image, ofCluster: descriptors[0].hostOffset / cs) == 3)
        }
        for i: UInt64 in 0..<3 {
            #expect(try image.read(Int(cs), at: i * cs) == [UInt8](repeating: UInt8(i + 1), count: Int(cs)))
        }
        // Compressing into an allocated cluster fails as in QEMU (EIO).
        #expect {
            try [UInt8](repeating: 9, count: Int(cs)).withUnsafeBytes { try image.writeCompressed($0, at: 0) }
        } throws: { error in
            if case Qcow2Error.writeFailed(5, _) = error { return true }
            return false
        }
        // Overwriting a compressed cluster copies it into a normal one.
        try WriteFixture.write(image, [7, 7], at: cs + 5)
        #expect(try entry(image, cs) & copied != 0)
        var expected = [UInt8](repeating: 2, count: Int(cs))
        expected[5] = 7
        expected[6] = 7
        #expect(try image.read(Int(cs), at: cs) == expected)
        try WriteFixture.expectConsistent(image)
        try image.close()
    }

    @Test("incompressible data is written as a normal cluster; zstd images compress with zstd")
    func compressionFallbackAndZstd() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 1 << 20, clusterSize: 4096, compression: .zstd)
        let image = try WriteFixture.openWritable(path)
        var generator = SystemRandomNumberGenerator()
        let noise = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try noise.withUnsafeBytes { try image.writeCompressed($0, at: 0) }
        #expect(try entry(image, 0) & Qcow2EntryMask.compressed == 0)
        let text = Array(String(repeating: "qcow2 ", count: 700).utf8.prefix(4096))
        try text.withUnsafeBytes { try image.writeCompressed($0, at: 4096) }
        let entry = try #require(try WriteFixture.l2Entry(image, at: 4096)?.entry)
        #expect(entry & Qcow2EntryMask.compressed != 0)
        let descriptor = CompressedClusterDescriptor(entry: L2Entry(rawValue: entry), clusterBits: 12)
        // The file ends where the compressed data does, inside its last sector.
        var stored = [UInt8](repeating: 0, count: Int(descriptor.byteLength))
        try stored.withUnsafeMutableBytes { _ = try image.file.read(into: $0, at: descriptor.hostOffset) }
        #expect(try ZstdCodec().decompress(stored, outputLength: 4096) == text)
        #expect(try image.read(8192, at: 0) == noise + text)
        try WriteFixture.expectConsistent(image)
        try image.close()
    }

    @Test("the image's last, partial cluster can be compressed and discarded")
    func partialLastCluster() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 65536 + 1536, clusterSize: 4096)
        let image = try WriteFixture.openWritable(path)
        let tail = [UInt8](repeating: 3, count: 1536)
        try tail.withUnsafeBytes { try image.writeCompressed($0, at: 65536) }
        #expect(try entry(image, 65536) & Qcow2EntryMask.compressed != 0)
        #expect(try image.read(1536, at: 65536) == tail)
        try image.discard(at: 65536, length: 1536)
        #expect(try WriteFixture.l2Entry(image, at: 65536)?.entry == 1)
        #expect(try image.read(1536, at: 65536) == [UInt8](repeating: 0, count: 1536))
        try WriteFixture.expectConsistent(image)
        try image.close()
    }
}
