// BlockFile, the codec's only owner of a file descriptor: the range checks in
// front of the kernel, and what fallocate, lseek and the zero-write order
// leave in a file (read back through the file itself). The host file system
// is the test machine's (ext4, xfs, btrfs and tmpfs all punch holes).
import Foundation
import Testing
@testable import Qcow2

@Suite("BlockFile")
struct BlockFileTests {
    static let kib: UInt64 = 1024

    /// A file of `count` bytes of `byte`, written and synced.
    private func filled(_ dir: TestDirectory, _ name: String, count: UInt64, byte: UInt8 = 0xab) throws -> BlockFile {
        let file = try BlockFile.create(path: dir.file(name))
        try file.write([UInt8](repeating: byte, count: Int(count)), at: 0)
        try file.flush()
        return file
    }

    private func bytes(_ file: BlockFile, _ offset: UInt64, _ count: UInt64) throws -> [UInt8] {
        try file.readExactly(Int(count), at: offset, step: "test")
    }

    @Test("ranges past Int64.max are refused with an error, never a trap")
    func overflowingRanges() throws {
        let dir = try TestDirectory()
        let file = try filled(dir, "f", count: 4096)
        defer { try? file.close() }
        let max = UInt64(Int64.max)

        // fallocate: the kernel's answers (negative offset, end past the largest file).
        for mode: FallocateMode in [.allocate, .zeroRange, .deallocate] {
            #expect(file.fallocate(mode, offset: .max, length: 1) == EINVAL)
            #expect(file.fallocate(mode, offset: max + 1, length: 1) == EINVAL)
            #expect(file.fallocate(mode, offset: max, length: 1) == EFBIG)
            #expect(file.fallocate(mode, offset: 4096, length: .max) == EFBIG)
        }
        #expect(throws: Qcow2Error.io(step: "punch hole at offset \(max), 2 bytes", errno: EFBIG)) {
            try file.punchHole(offset: max, length: 2)
        }
        #expect(throws: Qcow2Error.io(step: "fallocate at offset \(UInt64.max), 1 bytes", errno: EINVAL)) {
            try file.allocate(offset: .max, length: 1)
        }
        #expect(throws: Qcow2Error.io(step: "truncate to \(max + 1)", errno: EINVAL)) {
            try file.truncate(to: max + 1)
        }
        #expect(throws: Qcow2Error.io(step: "write zeroes", errno: EFBIG)) {
            _ = try file.zeroWithoutWriting(offset: max, length: 4096, mayUnmap: false)
        }
        #expect(throws: Qcow2Error.io(step: "discard", errno: EFBIG)) {
            try file.discard(offset: 4096, length: .max)
        }
        #expect(throws: Qcow2Error.io(step: "write at offset \(max)", errno: EIO)) {
            try file.write([1], at: max)
        }
        // Nothing lies past any end of file.
        #expect(file.seek(to: .data, from: .max) == .failure(.noSuchAddressOrDevice))
        #expect(file.nextHole(from: max + 1) == nil)
        #expect(file.extent(at: .max, length: 1, totalSize: 4096) == FileExtent(length: 0, isData: false, reachesEnd: true))
        // The file is as it was.
        #expect(try file.size() == 4096)
        #expect(try bytes(file, 0, 4096) == [UInt8](repeating: 0xab, count: 4096))
    }

    @Test("a punched hole reads as zeroes, keeps the length and is a hole")
    func punchHole() throws {
        let dir = try TestDirectory()
        let kib = Self.kib
        let file = try filled(dir, "f", count: 1024 * kib)
        defer { try? file.close() }
        let before = try file.allocatedSize()

        try file.punchHole(offset: 64 * kib, length: 128 * kib)
        #expect(try file.size() == 1024 * kib)
        #expect(try bytes(file, 60 * kib, 4 * kib) == [UInt8](repeating: 0xab, count: Int(4 * kib)))
        #expect(try bytes(file, 64 * kib, 128 * kib) == [UInt8](repeating: 0, count: Int(128 * kib)))
        #expect(try bytes(file, 192 * kib, 4 * kib) == [UInt8](repeating: 0xab, count: Int(4 * kib)))
        // (Less when the extent tree needs no new block for the split.)
        #expect(try file.allocatedSize() <= before - 128 * kib)
        #expect(file.extent(at: 64 * kib, length: 1024 * kib, totalSize: 1024 * kib)
                == FileExtent(length: 128 * kib, isData: false, reachesEnd: false))

        // Discard is the same hole, through the zero-write policy's memory.
        try file.discard(offset: 512 * kib, length: 64 * kib)
        #expect(try bytes(file, 512 * kib, 64 * kib) == [UInt8](repeating: 0, count: Int(64 * kib)))
        #expect(try file.allocatedSize() <= before - 192 * kib)
    }

    @Test("zeroing without writing: zeroes that stay allocated, or a hole when unmapping is allowed")
    func zeroWithoutWriting() throws {
        let dir = try TestDirectory()
        let kib = Self.kib
        let file = try filled(dir, "f", count: 256 * kib)
        defer { try? file.close() }
        let before = try file.allocatedSize()

        #expect(try file.zeroWithoutWriting(offset: 64 * kib, length: 64 * kib, mayUnmap: false))
        #expect(try bytes(file, 0, 256 * kib)
                == [UInt8](repeating: 0xab, count: Int(64 * kib)) + [UInt8](repeating: 0, count: Int(64 * kib))
                + [UInt8](repeating: 0xab, count: Int(128 * kib)))
        #expect(try file.allocatedSize() >= before)

        #expect(try file.zeroWithoutWriting(offset: 128 * kib, length: 64 * kib, mayUnmap: true))
        #expect(try bytes(file, 128 * kib, 64 * kib) == [UInt8](repeating: 0, count: Int(64 * kib)))
        #expect(try file.allocatedSize() <= before - 64 * kib + 4 * kib)
        #expect(try file.size() == 256 * kib)

        // Past the end of the file: the zeroes extend it, allocated.
        #expect(try file.zeroWithoutWriting(offset: 320 * kib, length: 64 * kib, mayUnmap: false))
        #expect(try file.size() == 384 * kib)
        #expect(try bytes(file, 256 * kib, 128 * kib) == [UInt8](repeating: 0, count: Int(128 * kib)))
        #expect(try file.allocatedSize() >= before)
    }

    @Test("allocation extends the file with zeroes; truncation sets the length")
    func allocateAndTruncate() throws {
        let dir = try TestDirectory()
        let kib = Self.kib
        let file = try BlockFile.create(path: dir.file("f"))
        defer { try? file.close() }

        try file.allocate(offset: 0, length: 256 * kib)
        #expect(try file.size() == 256 * kib)
        #expect(try file.allocatedSize() >= 256 * kib)
        #expect(try bytes(file, 0, 256 * kib) == [UInt8](repeating: 0, count: Int(256 * kib)))

        // Mode 0 past the end extends too; keepSize alone allocates without.
        #expect(file.fallocate(.allocate, offset: 256 * kib, length: 64 * kib) == 0)
        #expect(try file.size() == 320 * kib)
        #expect(file.fallocate(.keepSize, offset: 320 * kib, length: 64 * kib) == 0)
        #expect(try file.size() == 320 * kib)

        try file.truncate(to: 1024 * kib)
        #expect(try file.size() == 1024 * kib)
        try file.truncate(to: 8 * kib)
        #expect(try file.size() == 8 * kib)
        try file.allocate(offset: 0, length: 0)   // nothing to do
        #expect(try file.size() == 8 * kib)
    }

    @Test("extents follow the file's data and holes")
    func extents() throws {
        let dir = try TestDirectory()
        let kib = Self.kib
        let file = try filled(dir, "f", count: 64 * kib)
        defer { try? file.close() }
        try file.truncate(to: 1024 * kib)
        try file.write([UInt8](repeating: 1, count: Int(64 * kib)), at: 960 * kib)
        try file.flush()
        let total = try file.sectorRoundedSize()
        #expect(total == 1024 * kib)

        #expect(file.extent(at: 0, length: total, totalSize: total) == FileExtent(length: 64 * kib, isData: true, reachesEnd: false))
        #expect(file.extent(at: 4 * kib, length: 8 * kib, totalSize: total) == FileExtent(length: 8 * kib, isData: true, reachesEnd: false))
        #expect(file.extent(at: 64 * kib, length: total, totalSize: total) == FileExtent(length: 896 * kib, isData: false, reachesEnd: false))
        #expect(file.extent(at: 960 * kib, length: total, totalSize: total) == FileExtent(length: 64 * kib, isData: true, reachesEnd: true))
        #expect(file.extent(at: total, length: 1, totalSize: total) == FileExtent(length: 0, isData: false, reachesEnd: true))

        #expect(file.nextData(from: 64 * kib) == 960 * kib)
        #expect(file.nextHole(from: 0) == 64 * kib)
        #expect(file.seek(to: .hole, from: 960 * kib) == .success(1024 * kib))
    }

    @Test("the fallocate modes are the kernel's bits")
    func fallocateModes() {
        #expect(FallocateMode.allocate.rawValue == 0)
        #expect(FallocateMode.keepSize.rawValue == 0x01)
        #expect(FallocateMode.deallocate.rawValue == 0x03)
        #expect(FallocateMode.zeroRange.rawValue == 0x10)
    }
}
