// The in-memory bitmap and the codec's bitmap operations, without QEMU:
// chunks set at the bitmap's granularity, serialization order, merges
// across granularities, resizes, and a store/load round trip through an
// image closed and opened again. The comparison with QEMU's own images and
// bits is in Tests/InteropTests/BitmapInteropTests.swift.
import Testing
@testable import Qcow2

@Suite struct DirtyBitmapTests {
    @Test("a range sets every chunk it touches, clipped to the size")
    func setDirty() {
        var bitmap = DirtyBitmap(name: "b", granularity: 4096, size: 10 * 4096 + 100)
        bitmap.setDirty(offset: 4095, length: 2)
        bitmap.setDirty(offset: 9 * 4096, length: 1 << 40)
        #expect(bitmap.dirtyRuns().map { [$0.first, $0.last] } == [[0, 1], [9, 10]])
        #expect(bitmap.dirtyRanges().last.map { $0.offset + $0.length } == 10 * 4096 + 100)
        bitmap.clear()
        #expect(bitmap.isEmpty)
    }

    @Test("runs: dirty and clean stretches across pages, from unaligned offsets, capped, clean past the size")
    func runs() {
        var bitmap = DirtyBitmap(name: "b", granularity: 512, size: 512 * 100_000 + 100)
        bitmap.setBits(10, through: 40_000)
        bitmap.setBits(99_999, through: 100_000)
        #expect(bitmap.run(at: 0, end: 1 << 40) == (5120, false))
        #expect(bitmap.run(at: 5200, end: 1 << 40) == (40_001 * 512 - 5200, true))
        #expect(bitmap.run(at: 5200, end: 6000) == (800, true))
        #expect(bitmap.run(at: 5200, end: 1 << 40, maxDirty: 1000) == (1000, true))
        #expect(bitmap.run(at: 40_001 * 512, end: 1 << 40) == ((99_999 - 40_001) * 512, false))
        #expect(bitmap.run(at: 99_999 * 512, end: 1 << 40) == (612, true))
        #expect(bitmap.run(at: 512 * 100_000 + 100, end: 1 << 20 + 512 * 100_000) == (1 << 20 - 100, false))
        #expect(bitmap.firstBit(true, from: 40_001, before: 200_000) == 99_999)
        #expect(bitmap.firstBit(false, from: 10, before: 30_000) == 30_000)
    }

    @Test("serialized least significant bit first, in whole 64-bit words; pages far apart stay sparse")
    func serialization() {
        var bitmap = DirtyBitmap(name: "b", granularity: 512, size: 1 << 40)
        bitmap.setBits(0, through: 0)
        bitmap.setBits(9, through: 9)
        bitmap.setBits(1 << 30, through: (1 << 30) + 63)
        #expect(bitmap.serialize(fromBit: 0, byteCount: 8) == [1, 2, 0, 0, 0, 0, 0, 0])
        #expect(bitmap.serialize(fromBit: 1 << 30, byteCount: 16) == [UInt8](repeating: 0xff, count: 8) + [UInt8](repeating: 0, count: 8))
        #expect(bitmap.serializedSize == (1 << 31) / 64 * 8)
        var copy = DirtyBitmap(name: "c", granularity: 512, size: 1 << 40)
        copy.deserialize(bitmap.serialize(fromBit: 0, byteCount: 8), fromBit: 0)
        #expect(copy.dirtyRuns().map { [$0.first, $0.last] } == [[0, 0], [9, 9]])
    }

    @Test("a merge across granularities marks the target's chunks covering the source's")
    func mergeAcrossGranularities() {
        var coarse = DirtyBitmap(name: "c", granularity: 65536, size: 1 << 20)
        var fine = DirtyBitmap(name: "f", granularity: 512, size: 1 << 20)
        fine.setDirty(offset: 65536 * 3 - 512, length: 1024)
        coarse.merge(fine)
        #expect(coarse.dirtyRuns().map { [$0.first, $0.last] } == [[2, 3]])
        fine.clear()
        fine.merge(coarse)
        #expect(fine.dirtyRuns().map { [$0.first, $0.last] } == [[256, 511]])
    }

    @Test("resizing keeps the bits below the smaller size, and new chunks are clean")
    func truncate() {
        var bitmap = DirtyBitmap(name: "b", granularity: 512, size: 1 << 20)
        bitmap.setDirty(offset: 0, length: 1 << 20)
        bitmap.truncate(to: 1000)
        #expect(bitmap.dirtyRuns().map { [$0.first, $0.last] } == [[0, 1]])
        bitmap.truncate(to: 1 << 22)
        #expect(bitmap.dirtyRuns().map { [$0.first, $0.last] } == [[0, 1]])
        #expect(bitmap.bitCount == (1 << 22) / 512)
    }

    @Test("bitmaps added, written through and stored on close come back on the next open, marked in use on disk")
    func storeAndLoad() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 4 << 20)
        var image = try WriteFixture.openWritable(path)
        try image.addDirtyBitmap("a", granularity: nil, persistent: true, disabled: false, node: "n")
        try image.addDirtyBitmap("d", granularity: 512, persistent: true, disabled: true, node: "n")
        try image.addDirtyBitmap("t", granularity: 4096, persistent: false, disabled: false, node: "n")
        #expect(throws: BitmapError("Bitmap already exists: a")) {
            try image.addDirtyBitmap("a", granularity: nil, persistent: true, disabled: false, node: "n")
        }
        try WriteFixture.write(image, [1, 2, 3], at: 70000)
        try image.writeZeroes(at: 1 << 21, length: 65536, mayUnmap: true)
        try image.close()

        image = try WriteFixture.openWritable(path)
        let bitmaps = try image.dirtyBitmaps()
        // Stored newest first ("d", then "a"), loaded each in front: "a" first.
        #expect(bitmaps.map(\.name) == ["a", "d"])
        #expect(bitmaps.map(\.isEnabled) == [true, false])
        #expect(bitmaps.first?.dirtyRuns().map { [$0.first, $0.last] } == [[1, 1], [32, 32]])
        #expect(bitmaps.last?.isEmpty == true)
        let onDisk = try Qcow2Image.open(path: path, locking: .forceShared).dirtyBitmaps()
        #expect(onDisk.allSatisfy { $0.isInconsistent })
        #expect(throws: BitmapError("Bitmap 'a' is inconsistent and cannot be used\n"
                                    + "Try block-dirty-bitmap-remove to delete this bitmap from disk")) {
            try Qcow2Image.checkUsable(onDisk[0])
        }
        try image.removeDirtyBitmap("a")
        try image.removeDirtyBitmap("d")
        try image.close()
        let closed = try Qcow2Image.open(path: path)
        defer { try? closed.close() }
        #expect(try closed.dirtyBitmaps().isEmpty)
        #expect(!closed.header.autoclearFeatures.contains(.bitmaps))
    }

    @Test("a transaction's undo of a clear and a merge keeps the ranges guest writes marked meanwhile")
    func transactionRestoreKeepsLoggedWrites() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 4 << 20)
        let image = try WriteFixture.openWritable(path)
        defer { try? image.close() }
        try image.addDirtyBitmap("a", granularity: 65536, persistent: false, disabled: false, node: "n")
        try image.addDirtyBitmap("m", granularity: 65536, persistent: false, disabled: false, node: "n")
        try WriteFixture.write(image, [1], at: 0)
        image.beginBitmapWriteLog()
        let cleared = try image.clearDirtyBitmapKeepingBackup("a")
        var source = DirtyBitmap(name: "s", granularity: 65536, size: 4 << 20, isPersistent: false)
        source.setDirty(offset: 1 << 20, length: 1)
        let merged = try image.mergeDirtyBitmap(into: "m", from: source)
        // A guest write while the transaction is under way.
        try WriteFixture.write(image, [2], at: 3 << 20)
        image.restoreDirtyBitmap(cleared)
        image.restoreDirtyBitmap(merged)
        image.endBitmapWriteLog()
        let runs = try image.dirtyBitmaps().map { $0.dirtyRuns().map { [$0.first, $0.last] } }
        #expect(runs == [[[0, 0], [48, 48]], [[0, 0], [48, 48]]])
    }

    @Test("a transaction's write log past its limit stands for the whole guest on undo")
    func transactionWriteLogLimit() throws {
        let dir = try TestDirectory()
        let image = try WriteFixture.openWritable(try WriteFixture.create(dir, size: 4 << 20))
        defer { try? image.close() }
        try image.addDirtyBitmap("a", granularity: 65536, persistent: false, disabled: false, node: "n")
        image.beginBitmapWriteLog()
        let cleared = try image.clearDirtyBitmapKeepingBackup("a")
        for _ in 0...Qcow2Image.bitmapWriteLogLimit { try WriteFixture.write(image, [1], at: 0) }
        image.restoreDirtyBitmap(cleared)
        image.endBitmapWriteLog()
        #expect(try image.dirtyBitmaps().first?.dirtyRuns().map { [$0.first, $0.last] } == [[0, 63]])
    }

    @Test("a transaction's undo of a disable keeps the ranges guest writes marked while the bitmap was off")
    func transactionUndoneDisableKeepsLoggedWrites() throws {
        let dir = try TestDirectory()
        let image = try WriteFixture.openWritable(try WriteFixture.create(dir, size: 4 << 20))
        defer { try? image.close() }
        try image.addDirtyBitmap("a", granularity: 65536, persistent: false, disabled: false, node: "n")
        image.beginBitmapWriteLog()
        let was = try image.setDirtyBitmapEnabledKeepingState("a", false)
        // A guest write while the transaction is under way: "a" is off.
        try WriteFixture.write(image, [2], at: 3 << 20)
        image.restoreDirtyBitmapEnabled("a", was)
        image.endBitmapWriteLog()
        let bitmap = try image.dirtyBitmaps().first
        #expect(bitmap?.isEnabled == true)
        #expect(bitmap?.dirtyRuns().map { [$0.first, $0.last] } == [[48, 48]])
    }

    @Test("a removal in a transaction takes the bitmap off the disk and keeps it busy until undone")
    func transactionDetach() throws {
        let dir = try TestDirectory()
        let path = try WriteFixture.create(dir, size: 4 << 20)
        var image = try WriteFixture.openWritable(path)
        try image.addDirtyBitmap("p", granularity: nil, persistent: true, disabled: false, node: "n")
        try image.close()
        image = try WriteFixture.openWritable(path)
        #expect(try image.detachDirtyBitmap("p"))
        let busy = "Bitmap 'p' is currently in use by another operation and cannot be used"
        #expect(throws: BitmapError(busy)) { try image.clearDirtyBitmap("p") }
        #expect(throws: BitmapError(busy)) { try image.removeDirtyBitmap("p") }
        let onDisk = try Qcow2Image.open(path: path, locking: .forceShared).dirtyBitmaps()
        #expect(onDisk.isEmpty)
        image.reattachDirtyBitmap("p", persistent: true)
        try image.clearDirtyBitmap("p")
        try image.close()
        let reopened = try Qcow2Image.open(path: path)
        defer { try? reopened.close() }
        #expect(try reopened.dirtyBitmaps().map(\.name) == ["p"])
    }
}
