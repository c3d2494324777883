// Reads and writes from several threads at once: metadata must stay
// consistent, and each thread's own region must hold exactly what it wrote.
import Foundation
import Testing
@testable import Qcow2

@Suite("Write path: concurrency")
struct WriteConcurrencyTests {
    /// A thread-safe place for failures found on worker threads.
    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private var messages: [String] = []
        func add(_ message: String) { lock.lock(); messages.append(message); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return messages }
    }

    @Test("threads writing (plain, compressed, zeroes, discards) their own regions and one shared region",
          arguments: [(UInt64(512), false), (4096, false), (65536, true)])
    func concurrentWriters(clusterSize: UInt64, extendedL2: Bool) throws {
        let dir = try TestDirectory()
        let threads = 4
        let region: UInt64 = 96 * 1024
        let shared = UInt64(threads) * region
        let size = shared + region
        let path = try WriteFixture.create(dir, size: size, clusterSize: clusterSize, extendedL2: extendedL2)
        let image = try WriteFixture.openWritable(path)
        let failures = Failures()
        // Each worker touches only its own model.
        let models = (0..<threads).map { _ in ModelBox(GuestModel(size: region)) }

        DispatchQueue.concurrentPerform(iterations: threads + 2) { worker in
            var random = SeededRandom(seed: UInt64(worker) &* 7919 &+ clusterSize)
            do {
                if worker >= threads {
                    // Overlapping writers in the shared region: content is
                    // whoever came last, metadata must stay sound.
                    for round in 0..<60 {
                        let offset = shared + random.next(below: region - 5000)
                        let data = [UInt8](repeating: UInt8(truncatingIfNeeded: round + worker), count: Int(1 + random.next(below: 4999)))
                        try WriteFixture.write(image, data, at: offset)
                        _ = try image.read(4096, at: shared + random.next(below: region - 4096))
                    }
                    return
                }
                let base = UInt64(worker) * region
                for round in 0..<80 {
                    let offset = random.next(below: region - 1)
                    let length = 1 + random.next(below: min(region - offset, 3 * clusterSize + 17) )
                    // A whole cluster inside this region, for compressed writes.
                    let cluster = (base + offset) / clusterSize * clusterSize
                    let clusterInRegion = cluster >= base && cluster + clusterSize <= base + region
                    switch random.next(below: 10) {
                    case 2 where clusterInRegion:
                        let data = [UInt8](repeating: UInt8(truncatingIfNeeded: round + 3 * worker), count: Int(clusterSize))
                        do {
                            try data.withUnsafeBytes { try image.writeCompressed($0, at: cluster) }
                            models[worker].model.write(data, at: cluster - base)
                        } catch let Qcow2Error.writeFailed(code, _) where code == EIO {
                            // The cluster is allocated: compression refuses, as QEMU does.
                        }
                    case 0:
                        try image.writeZeroes(at: base + offset, length: length, mayUnmap: random.next(below: 2) == 0)
                        models[worker].model.zero(offset, length)
                    case 1:
                        // Whole clusters only; the model follows what discard promises.
                        let start = (offset + clusterSize - 1) / clusterSize * clusterSize
                        let end = (offset + length) / clusterSize * clusterSize
                        try image.discard(at: base + offset, length: length)
                        if end > start { models[worker].model.zero(start, end - start) }
                    default:
                        let data = WriteFixture.pattern(UInt8(truncatingIfNeeded: round * 13 + worker), count: Int(length))
                        try WriteFixture.write(image, data, at: base + offset)
                        models[worker].model.write(data, at: offset)
                    }
                    let check = random.next(below: region - 512)
                    let got = try image.read(512, at: base + check)
                    if got != Array(models[worker].model.bytes[Int(check)..<Int(check + 512)]) {
                        failures.add("worker \(worker) round \(round): read at \(check) differs")
                    }
                }
            } catch {
                failures.add("worker \(worker): \(error)")
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all.prefix(5))")
        for worker in 0..<threads {
            #expect(try image.read(Int(region), at: UInt64(worker) * region) == models[worker].model.bytes, "region \(worker)")
        }
        try WriteFixture.expectConsistent(image)
        try image.close()
        let reopened = try Qcow2Image.open(path: path)
        for worker in 0..<threads {
            #expect(try reopened.read(Int(region), at: UInt64(worker) * region) == models[worker].model.bytes)
        }
    }
}

final class ModelBox: @unchecked Sendable {
    var model: GuestModel
    init(_ model: GuestModel) { self.model = model }
}

/// A small deterministic generator (SplitMix64).
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next(below bound: UInt64) -> UInt64 { bound == 0 ? 0 : next() % bound }
}
