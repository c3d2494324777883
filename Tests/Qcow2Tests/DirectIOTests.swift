// O_DIRECT files (cache=none/directsync): requests at any offset, length
// and buffer address read and write the same bytes as buffered I/O does
// (checked against a model and a buffered descriptor of the same file),
// the end of the file reads as zeroes, and the hot paths still allocate
// nothing per request. The temporary directory is on the test machine's
// disk file system, which takes O_DIRECT.
import AllocationCounter
import Foundation
import Testing
@testable import Qcow2

@Suite("O_DIRECT files")
struct DirectIOTests {
    @Test("the alignment found is QEMU's: 512 to 4096 bytes")
    func alignment() throws {
        let dir = try TestDirectory()
        let path = dir.file("a.raw")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(count: 65536)))
        let file = try BlockFile(path: path, writable: false, direct: true)
        defer { try? file.close() }
        let direct = try #require(file.directIO)
        #expect([512, 1024, 2048, 4096].contains(direct.requestAlignment))
        #expect([512, 1024, 2048, 4096].contains(direct.bufferAlignment))
        #expect(file.isDirect)
        #expect(!(try BlockFile(path: path, writable: false)).isDirect)
    }

    @Test("unaligned reads and writes match a model of the file")
    func unalignedRequests() throws {
        let dir = try TestDirectory()
        let path = dir.file("a.raw")
        let length = 300_000  // not a multiple of any block size
        var model = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(model)))
        let file = try BlockFile(path: path, writable: true, direct: true)
        defer { try? file.close() }
        var generator = SystemRandomNumberGenerator()
        let block = try #require(file.directIO).requestAlignment
        var touchedLastBlock = false
        // Bytes 1 past a 4096-aligned address: never aligned for O_DIRECT.
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 600_000, alignment: 4096)
        defer { storage.deallocate() }
        for round in 0..<200 {
            let offset = Int.random(in: 0..<(length - 1), using: &generator)
            let count = Int.random(in: 1...min(length - offset, round % 3 == 0 ? 280_000 : 9000), using: &generator)
            let shift = round % 2
            let buffer = UnsafeMutableRawBufferPointer(rebasing: storage[shift..<(shift + count)])
            if round % 2 == 0 {
                for i in 0..<count { buffer[i] = UInt8(truncatingIfNeeded: round &+ i) }
                try file.write(UnsafeRawBufferPointer(buffer), at: UInt64(offset))
                for i in 0..<count { model[offset + i] = buffer[i] }
                touchedLastBlock = touchedLastBlock || offset + count > length - length % block
            } else {
                let got = try file.read(into: buffer, at: UInt64(offset))
                #expect(got == count)
                #expect(Array(buffer) == Array(model[offset..<(offset + count)]), "read \(count) at \(offset)")
            }
        }
        let buffered = try BlockFile(path: path, writable: false)
        defer { try? buffered.close() }
        #expect(try buffered.readExactly(length, at: 0, step: "check") == model)
        // A write into the last, partial block writes all of it, as QEMU's
        // padded request does: the file then ends at the block's end.
        let end = touchedLastBlock ? (length + block - 1) / block * block : length
        #expect(try file.size() == UInt64(end))
    }

    @Test("the end of the file reads as zeroes; a write past it grows the file to a whole block")
    func endOfFile() throws {
        let dir = try TestDirectory()
        let path = dir.file("a.raw")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x11, count: 1000)))
        let file = try BlockFile(path: path, writable: true, direct: true)
        defer { try? file.close() }
        var bytes = [UInt8](repeating: 0xff, count: 100)
        let got = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: 950) }
        #expect(got == 50)
        #expect(bytes == [UInt8](repeating: 0x11, count: 50) + [UInt8](repeating: 0, count: 50))
        try file.write([1, 2, 3], at: 2000)
        let block = UInt64(try #require(file.directIO).requestAlignment)
        #expect(try file.size() == (2003 + block - 1) / block * block)
        #expect(try file.readExactly(1003, at: 1000, step: "check") == [UInt8](repeating: 0, count: 1000) + [1, 2, 3])
    }

    @Test("a qcow2 image on O_DIRECT: metadata and data through the aligned path, no allocation per 4 KiB request")
    func qcow2Image() throws {
        let dir = try TestDirectory()
        let path = dir.file("a.qcow2")
        try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: 4 << 20))
        let image = try Qcow2Image.open(path: path, writable: true, locking: ImageLocking(direct: true))
        #expect(image.file.isDirect)
        let aligned = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 4096)
        defer { aligned.deallocate() }
        aligned.initializeMemory(as: UInt8.self, repeating: 0x5a)
        try image.write(UnsafeRawBufferPointer(aligned), at: 0)
        try image.read(into: aligned, at: 0)
        let unaligned = UnsafeMutableRawBufferPointer(rebasing: aligned[1..<4097])
        try image.read(into: unaligned, at: 3)

        func allocations(_ body: () throws -> Void) rethrows -> Int {
            var best = Int.max
            for _ in 0..<3 {
                qk_allocation_count_start()
                try body()
                best = min(best, qk_allocation_count_stop())
            }
            return best
        }
        let request = UnsafeMutableRawBufferPointer(rebasing: aligned[0..<4096])
        #expect(try allocations { try image.read(into: request, at: 4096) } == 0, "aligned read")
        #expect(try allocations { try image.write(UnsafeRawBufferPointer(request), at: 4096) } == 0, "aligned rewrite")
        #expect(try allocations { try image.read(into: unaligned, at: 3) } == 0, "bounced read")
        #expect(try allocations { try image.write(UnsafeRawBufferPointer(unaligned), at: 5) } == 0, "bounced rewrite")
        try image.close()

        let reread = try Qcow2Image.open(path: path)
        defer { try? reread.close() }
        var bytes = [UInt8](repeating: 0, count: 8192)
        try bytes.withUnsafeMutableBytes { try reread.read(into: $0, at: 0) }
        #expect(bytes == [UInt8](repeating: 0x5a, count: 8192))
    }
}
