// ConvertCopy in-process: qemu-img's sparse detection on hand-made buffers,
// several workers with in-order and out-of-order writes giving the same
// content, and a failing target ending every worker (no worker left waiting
// for its turn). The CLI's behaviour against qemu-img is in InteropTests.
import Foundation
import Testing
@testable import Qcow2

@Suite("ConvertCopy")
struct ConvertCopyTests {
    /// Sectors of data (true) or zeroes (false).
    private func sectors(_ pattern: [Bool]) -> [UInt8] {
        pattern.flatMap { [UInt8](repeating: $0 ? 0x5a : 0, count: 512) }
    }

    /// A run as [1 for data or 0 for zeroes, its length in sectors].
    private func run(_ found: (isData: Bool, count: Int)) -> [Int] { [found.isData ? 1 : 0, found.count] }

    @Test("zero runs shorter than -S stay inside a write; longer ones split it")
    func sparseDetection() {
        let short = sectors([true, false, false, false, true])
        short.withUnsafeBytes { buffer in
            #expect(run(SparseDetection.dataRun(buffer, count: 5, minimum: 8, sector: 0, alignment: 8)) == [1, 5])
            // With -S 512 (one sector) the zero run ends the write.
            #expect(run(SparseDetection.dataRun(buffer, count: 5, minimum: 1, sector: 0, alignment: 1)) == [1, 1])
        }
        let long = sectors([true] + Array(repeating: false, count: 16))
        long.withUnsafeBytes { buffer in
            // The data run is rounded up to the alignment (8 sectors).
            #expect(run(SparseDetection.dataRun(buffer, count: 17, minimum: 8, sector: 0, alignment: 8)) == [1, 8])
        }
        let zero = sectors(Array(repeating: false, count: 9))
        zero.withUnsafeBytes { buffer in
            #expect(run(SparseDetection.dataRun(buffer, count: 9, minimum: 8, sector: 0, alignment: 8)) == [0, 9])
        }
    }

    /// A raw file of `size` bytes with a data sector every `stride` bytes.
    private func source(_ dir: TestDirectory, _ name: String, size: Int, stride: Int) throws -> RawImage {
        var bytes = [UInt8](repeating: 0, count: size)
        for offset in Swift.stride(from: 0, to: size, by: stride) {
            for i in offset..<min(size, offset + 512) { bytes[i] = UInt8(truncatingIfNeeded: offset / stride + 1) }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: dir.file(name)))
        return try RawImage.open(path: dir.file(name))
    }

    @Test("in-order and out-of-order writes with 16 workers give the same disk", arguments: [true, false])
    func workers(inOrder: Bool) throws {
        let dir = try TestDirectory()
        let a = try source(dir, "a.raw", size: 5 << 20, stride: 96 << 10)
        let b = try source(dir, "b.raw", size: 3 << 20, stride: 40 << 10)
        defer { try? a.close(); try? b.close() }
        let sources = ConvertSources([a, b])
        try Qcow2Creator.create(path: dir.file("out.qcow2"), options: Qcow2CreateOptions(size: 8 << 20))
        let target = try ConvertTarget.open(path: dir.file("out.qcow2"), format: .qcow2, cache: .unsafe)
        var settings = ConvertSettings()
        settings.parallel = 16
        settings.inOrder = inOrder
        try ConvertTarget.prepare(&settings, for: target, isNew: true)
        try ConvertTarget.finish(target) {
            try ConvertCopy(sources: sources, target: target, settings: settings).run()
        }
        let written = try ImageOpener.open(path: dir.file("out.qcow2"))
        defer { try? written.close() }
        #expect(try written.read(5 << 20, at: 0) == (try a.read(5 << 20, at: 0)))
        #expect(try written.read(3 << 20, at: 5 << 20) == (try b.read(3 << 20, at: 0)))
    }

    @Test("a target that refuses writes fails the copy once, with every worker stopped")
    func failingTarget() throws {
        let dir = try TestDirectory()
        let a = try source(dir, "a.raw", size: 8 << 20, stride: 64 << 10)
        defer { try? a.close() }
        try Data(count: 8 << 20).write(to: URL(fileURLWithPath: dir.file("out.raw")))
        let target = try RawImage.open(path: dir.file("out.raw"), writable: false)
        defer { try? target.close() }
        var settings = ConvertSettings()
        settings.parallel = 16
        #expect(throws: Qcow2Error.export(.write(offset: 0, reason: "Operation not permitted"))) {
            try ConvertCopy(sources: ConvertSources([a]), target: target, settings: settings).run()
        }
    }
}
