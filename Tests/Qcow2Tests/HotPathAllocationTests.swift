// The guest read and write hot paths allocate nothing per request: a 4 KiB
// read of allocated, zero and unallocated clusters, a 4 KiB rewrite of an
// allocated cluster, and a read of a compressed cluster (zlib and zstd), once
// the image is open and its tables cached. Counted with the test
// executable's malloc (AllocationCounter), on this thread only.
import AllocationCounter
import Testing
@testable import Qcow2

@Suite("Hot paths allocate nothing per request")
struct HotPathAllocationTests {
    /// Heap allocations `body` makes on this thread, the best of a few runs
    /// (the first may fill a cache that later ones reuse).
    private func allocations(_ body: () throws -> Void) rethrows -> Int {
        var best = Int.max
        for _ in 0..<3 {
            qk_allocation_count_start()
            do { try body() } catch {
                _ = qk_allocation_count_stop()
                throw error
            }
            best = min(best, qk_allocation_count_stop())
        }
        return best
    }

    /// A 4 MiB image in `dir` open for writing: cluster 0 data, cluster 1
    /// compressed (both bytes of 0x5a), the rest unallocated.
    private func makeImage(_ dir: TestDirectory, _ compression: CompressionType) throws -> Qcow2Image {
        let path = dir.file("a.qcow2")
        var options = Qcow2CreateOptions(size: 4 << 20)
        options.compressionType = compression
        try Qcow2Creator.create(path: path, options: options)
        let image = try Qcow2Image.open(path: path, writable: true)
        let cluster = [UInt8](repeating: 0x5a, count: 65536)
        try cluster.withUnsafeBytes {
            try image.write($0, at: 0)
            try image.writeCompressed($0, at: 65536)
        }
        return image
    }

    @Test("the counter sees allocations")
    func counterWorks() {
        let count = allocations {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
            buffer.deallocate()
        }
        #expect(count == 1)
    }

    @Test("4 KiB reads and rewrites", arguments: [CompressionType.zlib, .zstd])
    func readsAndRewrites(_ compression: CompressionType) throws {
        let dir = try TestDirectory()
        let image = try makeImage(dir, compression)
        defer { try? image.close() }
        try image.writeZeroes(at: 2 * 65536, length: 65536, mayUnmap: false)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        // Tables in the cache first.
        for offset: UInt64 in [0, 65536, 2 * 65536, 3 * 65536] { try image.read(into: buffer, at: offset) }

        #expect(try allocations { try image.read(into: buffer, at: 4096) } == 0, "allocated cluster")
        #expect(try allocations { try image.read(into: buffer, at: 2 * 65536) } == 0, "zero cluster")
        #expect(try allocations { try image.read(into: buffer, at: 3 * 65536) } == 0, "unallocated cluster")
        #expect(try allocations { try image.read(into: buffer, at: 65536 + 8192) } == 0, "compressed cluster")
        #expect(try allocations { try image.write(UnsafeRawBufferPointer(buffer), at: 8192) } == 0, "rewrite")
        #expect(UnsafeRawBufferPointer(buffer).allSatisfy { $0 == 0x5a })
    }

    @Test("reads of a read-only image", arguments: [CompressionType.zlib, .zstd])
    func readOnly(_ compression: CompressionType) throws {
        let dir = try TestDirectory()
        try makeImage(dir, compression).close()
        let image = try Qcow2Image.open(path: dir.file("a.qcow2"))
        defer { try? image.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        for offset: UInt64 in [0, 65536] { try image.read(into: buffer, at: offset) }
        #expect(try allocations { try image.read(into: buffer, at: 4096) } == 0, "allocated cluster")
        #expect(try allocations { try image.read(into: buffer, at: 65536 + 4096) } == 0, "compressed cluster")
    }
}
