// The read path against QEMU: for images qemu-img and qemu-io wrote, our raw
// conversion must equal `qemu-img convert -O raw` byte for byte, our map
// output must equal `qemu-img map` line for line, and random reads must
// return the same bytes.
import Foundation
import Testing
@testable import Qcow2
@testable import QcowKitCommands

@Suite("Read path interop with qemu-img")
struct ReadInteropTests {
    @Test("convert -O raw equals qemu-img's", arguments: ReadFixtures.all)
    func convertMatches(_ fixture: ReadFixture) throws {
        let dir = try ScratchDirectory()
        let path = try fixture.make(dir)
        try QemuOracle.qemuImg("convert", "-O", "raw", path, dir.file("qemu.raw"))
        let image = try ImageOpener.open(path: path)
        defer { try? image.close() }
        try RawExport.write(image, to: dir.file("ours.raw"))

        let expected = try Data(contentsOf: URL(fileURLWithPath: dir.file("qemu.raw")))
        let actual = try Data(contentsOf: URL(fileURLWithPath: dir.file("ours.raw")))
        #expect(actual.count == expected.count)
        #expect(actual == expected)
        // Zeroes stay holes: no more host blocks than qemu-img allocates.
        let ours = try BlockFile(path: dir.file("ours.raw"), writable: false)
        let theirs = try BlockFile(path: dir.file("qemu.raw"), writable: false)
        #expect(try ours.allocatedSize() <= theirs.allocatedSize())
    }

    @Test("map output equals qemu-img's", arguments: ReadFixtures.all)
    func mapMatches(_ fixture: ReadFixture) throws {
        let dir = try ScratchDirectory()
        let path = try fixture.make(dir)
        let image = try ImageOpener.open(path: path)
        defer { try? image.close() }
        for style in [MapPrinter.Style.json, .human] {
            let qemu = try QemuOracle.qemuImg("map", "--output=\(style.rawValue)", path, check: false)
            var output = ""
            var failure: String?
            do {
                try MapPrinter.print(image: image, style: style, start: 0, maxLength: nil) { output += String(decoding: $0, as: UTF8.self) }
            } catch let error as CommandFailure {
                failure = error.message
            }
            #expect(output == qemu.output, "\(style) map of \(fixture.name)")
            #expect(failure.map { "qemu-img: \($0)\n" } == (qemu.status == 0 ? nil : qemu.errorOutput))
        }
    }

    @Test("map with --start-offset and --max-length equals qemu-img's", arguments: ReadFixtures.all.filter { ["3-deep chain", "extended_l2 subclusters"].contains($0.name) })
    func mapWindowMatches(_ fixture: ReadFixture) throws {
        let dir = try ScratchDirectory()
        let path = try fixture.make(dir)
        let image = try ImageOpener.open(path: path)
        defer { try? image.close() }
        for (start, length) in [(UInt64(1536), UInt64(200_000)), (70_000, 3 << 20), (4096, 1)] {
            let qemu = try QemuOracle.qemuImg("map", "--output=json", "--start-offset=\(start)", "--max-length=\(length)", path)
            var output = ""
            try MapPrinter.print(image: image, style: .json, start: start, maxLength: length) { output += String(decoding: $0, as: UTF8.self) }
            #expect(output == qemu.output)
        }
    }

    @Test("random reads return qemu's bytes, also from several threads", arguments: ReadFixtures.all)
    func randomReadsMatch(_ fixture: ReadFixture) throws {
        let dir = try ScratchDirectory()
        let path = try fixture.make(dir)
        try QemuOracle.qemuImg("convert", "-O", "raw", path, dir.file("qemu.raw"))
        let expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file("qemu.raw"))))
        let image = try ImageOpener.open(path: path)
        defer { try? image.close() }
        #expect(image.size == UInt64(expected.count))

        // Deterministic pseudo-random ranges: sector-unaligned, some long.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(fixture.name.utf8.count)
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 17 }
        let size = UInt64(expected.count)
        let ranges: [(UInt64, Int)] = (0..<64).map { _ in
            let offset = next() % size
            let length = Int(min(size - offset, next() % (next() % 2 == 0 ? 5000 : 400_000) + 1))
            return (offset, length)
        }
        let mismatches = Mismatches()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for (index, (offset, length)) in ranges.enumerated() where index % 4 == worker {
                let bytes = (try? image.read(length, at: offset)) ?? []
                if bytes[...] != expected[Int(offset)..<(Int(offset) + length)] { mismatches.add(offset) }
            }
        }
        #expect(mismatches.offsets.isEmpty)
    }
}

/// Offsets whose reads differed, collected from several threads.
final class Mismatches: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [UInt64] = []
    func add(_ offset: UInt64) { lock.lock(); list.append(offset); lock.unlock() }
    var offsets: [UInt64] { lock.lock(); defer { lock.unlock() }; return list }
}
