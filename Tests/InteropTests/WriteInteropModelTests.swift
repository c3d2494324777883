// Property test of the write path: long seeded random sequences applied
// through the library alone, with a model of the guest contents checked by
// reads after every operation; at the end qemu-img must find the image
// clean and equal (qemu-img compare) to a raw image of the model.
import Foundation
import Testing
@testable import Qcow2

@Suite("Write path property test")
struct WriteInteropModelTests {
    static let cases: [WriteDifferentialCase] = [
        WriteDifferentialCase(name: "512-byte clusters", options: ["cluster_size=512"], clusterSize: 512, seed: 201, operations: 150),
        WriteDifferentialCase(name: "4 KiB clusters, 1-bit refcounts, ragged", options: ["cluster_size=4096", "refcount_bits=1"],
                              clusterSize: 4096, ragged: true, seed: 202, operations: 150),
        WriteDifferentialCase(name: "extended L2 over a raw backing file",
                              options: ["extended_l2=on", "backing_file=back.raw", "backing_fmt=raw"],
                              clusterSize: 65536, clusters: 24, seed: 203, operations: 120,
                              prepare: { dir, _ in try WriteDifferentialCases.makeRawBacking(dir, size: 65536 * 24) }),
        WriteDifferentialCase(name: "compat=0.10 over a qcow2 backing file",
                              options: ["compat=0.10", "cluster_size=4096", "backing_file=back.qcow2", "backing_fmt=qcow2"],
                              clusterSize: 4096, seed: 204, operations: 150,
                              prepare: { dir, _ in try WriteDifferentialCases.makeQcow2Backing(dir, size: 4096 * 30) }),
        WriteDifferentialCase(name: "lazy refcounts, zstd", options: ["lazy_refcounts=on", "compression_type=zstd"],
                              clusterSize: 65536, clusters: 24, seed: 205, operations: 120),
    ]

    @Test("reads follow the model after every operation", arguments: cases)
    func property(_ c: WriteDifferentialCase) throws {
        let dir = try WriteScratch()
        let path = dir.file("image.qcow2")
        let hasBacking = c.options.contains { $0.hasPrefix("backing_file") }
        if hasBacking { try c.prepare?(dir, path) }
        try WriteProcess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", c.options.joined(separator: ","),
                            path, "\(c.size)"], in: dir.url)
        let random = WriteOracle.randomBytes(count: 65536, seed: c.seed)
        let image = try #require(try ImageOpener.open(path: path, format: .qcow2, writable: true) as? Qcow2Image)
        var model = WriteGuestModel(initial: try image.read(Int(c.size), at: 0), clusterSize: c.clusterSize,
                                    version: c.options.contains("compat=0.10") ? 2 : 3, hasBacking: hasBacking)
        var generator = WriteRandom(seed: c.seed ^ 0x5eed)
        for (i, op) in WriteOperationGenerator.operations(for: c).enumerated() {
            var failed = false
            do {
                try WriteOracle.apply(op, to: image, random: random)
            } catch let Qcow2Error.writeFailed(code, _) where code == EIO && op.isCompressed {
                // Compressing into an allocated cluster: QEMU refuses it too.
                failed = true
            }
            model.apply(op, buffer: WriteOracle.buffer(op, random: random), failed: failed)
            // The operation's range (and a cluster around it), and a random window.
            let (offset, length) = range(op)
            let from = offset >= c.clusterSize ? offset - c.clusterSize : 0
            let to = min(c.size, offset + length + c.clusterSize)
            #expect(try image.read(Int(to - from), at: from) == Array(model.bytes[Int(from)..<Int(to)]), "after op \(i): \(op)")
            let window = generator.next() % (c.size - 4096)
            #expect(try image.read(4096, at: window) == Array(model.bytes[Int(window)..<Int(window + 4096)]), "after op \(i)")
        }
        #expect(try image.read(Int(c.size), at: 0) == model.bytes)
        try image.close()

        let check = try WriteOracle.check(path)
        #expect(check.status == 0, "\(check.output)")
        try Data(model.bytes).write(to: URL(fileURLWithPath: dir.file("model.raw")))
        #expect(try WriteProcess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "qcow2", dir.file("model.raw"), path],
                                   check: false).status == 0)
    }

    private func range(_ op: WriteOp) -> (UInt64, UInt64) {
        switch op {
        case let .write(o, l, _), let .writeRandom(o, l), let .zeroes(o, l, _), let .discard(o, l),
             let .compressed(o, l, _), let .compressedRandom(o, l):
            return (o, l)
        }
    }
}
