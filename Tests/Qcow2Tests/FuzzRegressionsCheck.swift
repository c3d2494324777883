// What the `check` and `write` fuzz targets found, rebuilt by hand on the
// check's test images (CheckTestImage) so that each test says which field
// was hostile. The fuzzers' own inputs are in Fuzz/Corpus/<target>/crash-*,
// which every fuzz run replays.
import Foundation
import Testing
@testable import Qcow2

@Suite("Fuzz regressions: check and write")
struct FuzzRegressionsCheck {
    /// check, -r all: a refcount table entry naming a block a terabyte past
    /// the end of the file made the repair grow the file (sparse) and the
    /// in-memory counts to match: gigabytes of allocation. Such a block now
    /// fails to be reached as "file too large", and the structure is rebuilt.
    @Test("check -r all: a refcount block far past the end is not reached by growing the file")
    func refcountBlockFarPastTheEnd() throws {
        var image = CheckTestImage(clusterBits: 12)
        image.setU64(image.clusterSize + 8, 1 << 40)
        let file = try CheckTestFile(image)
        let (result, messages) = try file.check(.all)
        #expect(messages.contains("Repairing refcount block 1 is outside image"))
        #expect(messages.contains("ERROR could not resize image: File too large"))
        #expect(messages.contains("Rebuilding refcount structure"))
        #expect(result.corruptions == 0 && result.checkErrors == 0)
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? UInt64
        #expect((size ?? .max) < 1 << 20)
        let (again, _) = try file.check()
        #expect(again.corruptions == 0 && again.leaks == 0 && again.checkErrors == 0)
    }

    /// write: a file that ends inside its L2 table (the rest of the table
    /// reads as zeroes, as QEMU reads it, and the check calls the image
    /// consistent) was marked corrupt by the first guest write: "L2 table
    /// offset 0x4000 is beyond the end of the file". A table is refused only
    /// when it starts at or past the end, as the check counts it.
    @Test("write: an L2 table the file ends inside is used, not called corrupt")
    func l2TablePartlyPastTheEnd() throws {
        var image = CheckTestImage(clusterBits: 12, dataClusters: 0)
        image.bytes.removeLast(4096 - 200)
        let file = try CheckTestFile(image)
        let (before, _) = try file.check()
        #expect(before.corruptions == 0 && before.leaks == 0 && before.checkErrors == 0)

        let written = [UInt8](repeating: 0x5A, count: 6000)
        let qcow2 = try Qcow2Image.open(path: file.path, writable: true)
        try written.withUnsafeBytes { try qcow2.write($0, at: 1000) }
        try qcow2.writeZeroes(at: 99139, length: 512, mayUnmap: false)
        #expect(try qcow2.read(6000, at: 1000) == written)
        try qcow2.close()

        let (result, messages) = try file.check()
        #expect(messages.isEmpty)
        #expect(result.corruptions == 0 && result.leaks == 0 && result.checkErrors == 0)
        #expect(try Qcow2Image.open(path: file.path).read(6000, at: 1000) == written)
    }

    /// write: overwriting a cluster whose L2 entry is a compressed descriptor
    /// with a hostile, unaligned host offset frees that descriptor; the free
    /// fails on its first cluster (no refcount block can be reached), and
    /// undoing "the clusters done so far" computed their length from the
    /// unaligned offset: an arithmetic overflow trap. Now nothing is undone
    /// there, the free fails (QEMU ignores that: the clusters leak), and the
    /// write succeeds, as with qemu-io.
    @Test("write: freeing a compressed cluster with a hostile offset fails without trapping")
    func freeHostileCompressedDescriptor() throws {
        var image = CheckTestImage(clusterBits: 9)
        // 512-byte clusters: host offset in bits 0...60, sectors above.
        image.setL2(1, CheckTestImage.copied | 1 << 62 | 0x1c1_c1c1_c1c1_c1c1)
        let file = try CheckTestFile(image)
        let written = [UInt8](repeating: 0x44, count: 512)
        let qcow2 = try Qcow2Image.open(path: file.path, writable: true)
        try written.withUnsafeBytes { try qcow2.write($0, at: 512) }
        #expect(try qcow2.read(512, at: 512) == written)
        try qcow2.close()
        #expect(try Qcow2Image.open(path: file.path).read(512, at: 512) == written)
    }

    /// write: a hostile compressed descriptor made the write path grow the
    /// refcount table to millions of entries (as QEMU does, in half a
    /// second); listing its blocks for the overlap check then took quadratic
    /// time: every block added copied the whole set (32768 blocks: seconds
    /// in a debug build; now milliseconds).
    @Test("the overlap index takes refcount blocks in linear time")
    func overlapIndexIsLinear() {
        var overlap = MetadataOverlap(clusterBits: 9)
        let count: UInt64 = 1 << 15
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            overlap.setRefcountBlocks((1...count).lazy.map { $0 << 9 })
        }
        #expect(elapsed < .seconds(2))
        #expect(overlap.overlap(offset: count << 9, size: 1) == .refcountBlock)
        #expect(overlap.overlap(offset: (count + 1) << 9, size: 1) == nil)
    }

    /// write: an image whose bitmap directory is broken fails to open for
    /// writing after its writer was attached; the image's deinit then closed
    /// that writer, which reached the image through a checked `unowned`
    /// reference and trapped. A failed open now writes nothing back and
    /// fails as qemu-io's does. The input is the fuzz corpus's own file.
    @Test("write: a writable open that fails on the bitmap directory leaves the file untouched")
    func failedWritableOpenWritesNothing() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/Corpus/write/crash-failed-writable-open-closes-writer")
        let input = try Data(contentsOf: corpus).dropFirst(2)  // the workload's seed
        let scratch = try HostileScratch()
        let path = try scratch.write("image.qcow2", [UInt8](input))
        #expect {
            _ = try Qcow2Image.open(path: path, writable: true)
        } throws: { error in
            "\(error)" == "Broken bitmap directory"
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == input)
    }
}
