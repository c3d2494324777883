// Sizes that would make a reader allocate without bound: each is refused by
// the header checks, quickly and before the table it describes is read, or
// stays within the stated limit (Qcow2Limits: L1 table 32 MiB, refcount table
// 8 MiB, 65536 snapshots, bitmap directory 64 MiB). The CLI suite repeats the
// largest accepted sizes on sparse files under an address-space limit.
import Testing
@testable import Qcow2

@Suite("Hostile images: allocation bounds")
struct HostileAllocationTests {
    static let clusterSize = UInt64(HostileImage.clusterSize)

    @Test("huge tables are refused fast, naming the table", .tags(.hostile), arguments: [
        // (header field offset, width, value, error text)
        (36, 4, Qcow2Limits.maxL1TableBytes / 8, "Active L1 table lies beyond the end of the file"),
        (36, 4, Qcow2Limits.maxL1TableBytes / 8 + 1, "Active L1 table too large"),
        (36, 4, UInt64(UInt32.max), "Active L1 table too large"),
        (60, 4, UInt64(Qcow2Limits.maxSnapshots), "Snapshot table lies beyond the end of the file"),
        (60, 4, UInt64(Qcow2Limits.maxSnapshots) + 1, "Snapshot table too large"),
        (56, 4, Qcow2Limits.maxRefcountTableBytes / clusterSize, "Reference count table lies beyond the end of the file"),
        (56, 4, Qcow2Limits.maxRefcountTableBytes / clusterSize + 1, "Reference count table too large"),
        (56, 4, UInt64(UInt32.max), "Reference count table too large"),
    ] as [(Int, Int, UInt64, String)])
    func refusedFast(_ offset: Int, _ width: Int, _ value: UInt64, _ message: String) throws {
        let scratch = try HostileScratch()
        var image = HostileImage().patching(value, at: offset, width: width)
        if offset == 36 { image = image.patching(UInt64(UInt32.max) << 9 & ~511, at: 24) }   // a size that needs them
        let path = try scratch.write("huge.qcow2", image.bytes)
        let start = ContinuousClock.now
        let outcome = HostileReaders.run(path, scratch: scratch)
        #expect(ContinuousClock.now - start < .seconds(2), "refused only after \(ContinuousClock.now - start)")
        for (verb, result) in [("info", outcome.info.map { _ in () }), ("map", outcome.map.map { _ in () }),
                               ("convert", outcome.convert.map { _ in () })] {
            guard case let .failure(error) = result else {
                Issue.record("\(verb) accepted \(message)")
                continue
            }
            #expect("\(error)".contains(message), "\(verb): \(error)")
        }
    }

    @Test("a bitmaps extension at its limits is refused before the directory is read", .tags(.hostile))
    func bitmapDirectoryBounds() throws {
        let scratch = try HostileScratch()
        for (count, size, text) in [(UInt32(65535), UInt64(1024 * 65535), "Failed to read bitmap directory"),
                                    (UInt32(65535), UInt64(1024 * 65535 + 1), "exceeds the maximum supported size"),
                                    (UInt32(65536), UInt64(8), "exceeding the QEMU supported maximum")] {
            var header = Qcow2Header(version: 3, clusterBits: 12, size: UInt64(HostileImage.virtualSize))
            header.l1Size = 1
            header.l1TableOffset = UInt64(HostileImage.Offset.l1)
            header.refcountTableOffset = UInt64(HostileImage.Offset.refcountTable)
            header.refcountTableClusters = 1
            header.autoclearFeatures = .bitmaps
            let ext = BitmapsExtension(bitmapCount: count, directorySize: size, directoryOffset: 0x5000)
            var bytes = HostileImage().bytes
            let first = header.encode() + HeaderExtension.encodeAll([.bitmaps(ext.encode())])
            bytes.replaceSubrange(0..<first.count, with: first)
            let path = try scratch.write("bitmaps.qcow2", bytes)
            let start = ContinuousClock.now
            #expect(throws: (any Error).self) { _ = try ImageInfoReader.read(path: path, format: nil, backingChain: false) }
            do { _ = try ImageInfoReader.read(path: path, format: nil, backingChain: false) } catch {
                #expect("\(error)".contains(text), "\(error)")
            }
            #expect(ContinuousClock.now - start < .seconds(2))
        }
    }
}
