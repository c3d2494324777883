// The write path is not slower than qemu-io at what QEMU is used for:
// sequential 64 KiB writes and random 4 KiB writes to a fresh image (the same
// requests, one open image each, flushed and closed at the end; qemu-io reads
// its commands from a file). The resulting files are identical, too.
import Foundation
import Testing
@testable import Qcow2

@Suite("Write path performance against qemu-io")
struct WriteInteropPerformanceTests {
    @Test("sequential 64 KiB and random 4 KiB writes", arguments: ["sequential", "random"])
    func notSlowerThanQemuIO(_ kind: String) throws {
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

        let qemuStart = Date()
        try WriteProcess.run(["sh", "-c", "qemu-io \(dir.file("theirs.qcow2")) < \(dir.file("commands")) > /dev/null"])
        let qemuTime = Date().timeIntervalSince(qemuStart)

        let ourStart = Date()
        let image = try Qcow2Image.open(path: dir.file("ours.qcow2"), writable: true)
        let buffer = [UInt8](repeating: 7, count: blockSize)
        for offset in offsets { try buffer.withUnsafeBytes { try image.write($0, at: offset) } }
        try image.flush()
        try image.close()
        let ourTime = Date().timeIntervalSince(ourStart)

        print("\(kind): qemu-io \(qemuTime) s, library \(ourTime) s")
        #expect(ourTime <= qemuTime, "library \(ourTime) s, qemu-io \(qemuTime) s")
        #expect(try WriteOracle.firstDifference(dir.file("theirs.qcow2"), dir.file("ours.qcow2")) == nil)
    }
}
