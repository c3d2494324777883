// The cap on the memory an image's bitmaps hold together
// (Qcow2Limits.maxBitmapMemory, 2 GiB): a hostile image whose bitmaps all
// name one table of all-ones entries is refused before any bit is
// allocated, writable or read-only; adding a bitmap or growing the image
// past the cap is refused too. Bitmaps of a 2 TiB guest at 512-byte
// granularity take QEMU's largest size, 512 MiB each; the clean ones here
// allocate no pages.
import Foundation
import Testing
@testable import Qcow2

@Suite("Bitmap memory cap")
struct BitmapMemoryLimitTests {
    static let guest: UInt64 = 2 << 40
    static let largest: UInt64 = 512 << 20

    static func message(_ total: UInt64) -> String {
        "Dirty bitmaps would need \(total) bytes of memory, more than qcowkit's limit of 2147483648 bytes"
    }

    /// An image whose directory lists `count` bitmaps of 512 MiB that all
    /// share one table whose every entry reads as all ones.
    static func hostileImage(_ dir: TestDirectory, count: Int) throws -> String {
        let path = try WriteFixture.create(dir, size: guest)
        let image = try WriteFixture.openWritable(path)
        try image.addDirtyBitmap("a", granularity: 512, persistent: true, disabled: false, node: "n")
        try image.close()
        let opened = try Qcow2Image.open(path: path)
        var found: BitmapsExtension?
        for case let .bitmaps(data) in opened.extensions { found = try BitmapsExtension(data: data) }
        try opened.close()
        let ext = try #require(found)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: ext.directoryOffset)
        let first = try #require(try handle.read(upToCount: 16))
        let tableOffset = first.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let tableSize = first.dropFirst(8).prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(UInt64(tableSize) * 65536 * 8 * 512 == guest)
        // Every table entry: no cluster, all ones.
        try handle.seek(toOffset: tableOffset)
        handle.write(Data((0..<Int(tableSize)).flatMap { _ in [0, 0, 0, 0, 0, 0, 0, 1] as [UInt8] }))
        let entries = (0..<count).map {
            BitmapDirectoryEntry(tableOffset: tableOffset, tableSize: tableSize, flags: BitmapDirectory.flagAuto,
                                 granularityBits: 9, name: "b\($0)")
        }
        let directory = BitmapDirectory.encode(entries)
        try handle.seek(toOffset: ext.directoryOffset)
        handle.write(Data(directory))
        // The extension's count and directory size, found by its magic.
        try handle.seek(toOffset: 0)
        let header = try #require(try handle.read(upToCount: 4096))
        let magic: [UInt8] = [0x23, 0x85, 0x28, 0x75]
        let at = try #require((0..<header.count - 4).first { Array(header[$0..<$0 + 4]) == magic })
        let patched = BitmapsExtension(bitmapCount: UInt32(count), directorySize: UInt64(directory.count),
                                       directoryOffset: ext.directoryOffset)
        try handle.seek(toOffset: UInt64(at + 8))
        handle.write(Data(patched.encode()))
        return path
    }

    @Test("a hostile image's shared all-ones table: refused before loading, writable and read-only")
    func hostileSharedTable() throws {
        let dir = try TestDirectory()
        let path = try Self.hostileImage(dir, count: 5)
        #expect(throws: Qcow2Error.invalidBitmaps(Self.message(5 * Self.largest))) {
            _ = try WriteFixture.openWritable(path)
        }
        let readOnly = try Qcow2Image.open(path: path)
        defer { try? readOnly.close() }
        #expect(throws: BitmapError(Self.message(5 * Self.largest))) { _ = try readOnly.dirtyBitmaps() }
    }

    @Test("adding a bitmap past the cap is refused; up to it is not")
    func add() throws {
        let dir = try TestDirectory()
        let image = try WriteFixture.openWritable(try WriteFixture.create(dir, size: Self.guest))
        defer { try? image.close() }
        for name in ["a", "b", "c", "d"] {
            try image.addDirtyBitmap(name, granularity: 512, persistent: false, disabled: false, node: "n")
        }
        #expect(throws: BitmapError(Self.message(5 * Self.largest))) {
            try image.addDirtyBitmap("e", granularity: 512, persistent: false, disabled: false, node: "n")
        }
        #expect(try image.dirtyBitmaps().count == 4)
    }

    @Test("growing the image past the cap with its bitmaps is refused")
    func grow() throws {
        let dir = try TestDirectory()
        let image = try WriteFixture.openWritable(try WriteFixture.create(dir, size: Self.guest))
        defer { try? image.close() }
        for name in ["a", "b", "c"] {
            try image.addDirtyBitmap(name, granularity: 512, persistent: false, disabled: false, node: "n")
        }
        let newSize = Self.guest + (1 << 40)
        #expect(throws: Qcow2Error.writeFailed(errno: ENOMEM, reason: Self.message(3 * (newSize / 512 / 8)))) {
            try image.truncate(to: newSize, preallocation: .off)
        }
        #expect(image.size == Self.guest)
    }

    @Test("growing to the largest size with thousands of small bitmaps is refused, their sum saturated")
    func growSumSaturates() throws {
        let dir = try TestDirectory()
        let image = try WriteFixture.openWritable(try WriteFixture.create(dir, size: 1 << 20))
        defer { try? image.close() }
        // 2^51 bytes each at the new size: 8192 of them make 2^64. Set in
        // place (8200 adds, each summing those before, take seconds).
        try image.withWriter { writer, _ in
            writer.dirtyBitmaps = (0..<8200).map {
                DirtyBitmap(name: "b\($0)", granularity: 512, size: 1 << 20, isPersistent: false)
            }
        }
        #expect(throws: Qcow2Error.writeFailed(errno: ENOMEM, reason: Self.message(.max))) {
            try image.truncate(to: Qcow2Limits.maxVirtualSize, preallocation: .off)
        }
        #expect(image.size == 1 << 20)
    }
}
