// Many writes through one open image, as QEMU is used: sequential 64 KiB
// writes and random 4 KiB writes to a fresh image (the same requests, one
// open image each, flushed and closed at the end; qemu-io reads its commands
// from a file) leave files identical to qemu-io's. How fast is
// Scripts/benchmark.sh's question, not a test's.
import Foundation
import Testing
import TestSupport
@testable import Qcow2

@Suite("Bulk writes against qemu-io")
struct WriteInteropBulkTests {
    @Test("sequential 64 KiB and random 4 KiB writes", arguments: ["sequential", "random"])
    func sameFileAsQemuIO(_ kind: String) throws {
        let dir = try WriteScratch()
        let blockSize = kind == "sequential" ? 65536 : 4096
        let count = kind == "sequential" ? 512 : 2000
        var random = WriteRandom(seed: 11)
        let offsets: [UInt64] = (0..<count).map { i in
            kind == "sequential" ? UInt64(i * blockSize) : (random.next() % ((1 << 30) / 4096)) * 4096
        }
        for name in ["theirs.qcow2", "ours.qcow2"] {
            try WriteProcess.run(["qemu-img", "create", "-q", "-f", "qcow2", dir.file(name), "1G"])
        }
        let commands = offsets.map { "write -q -P 7 \($0) \(blockSize)" }.joined(separator: "\n") + "\nflush\n"
        try commands.write(toFile: dir.file("commands"), atomically: true, encoding: .utf8)

        let qemuIO = try TestTools.qemuIO()
        try WriteProcess.run(["sh", "-c", "\(qemuIO) \(dir.file("theirs.qcow2")) < \(dir.file("commands")) > /dev/null"])

        let image = try Qcow2Image.open(path: dir.file("ours.qcow2"), writable: true)
        let buffer = [UInt8](repeating: 7, count: blockSize)
        for offset in offsets { try buffer.withUnsafeBytes { try image.write($0, at: offset) } }
        try image.flush()
        try image.close()

        #expect(try WriteOracle.firstDifference(dir.file("theirs.qcow2"), dir.file("ours.qcow2")) == nil)
    }
}
