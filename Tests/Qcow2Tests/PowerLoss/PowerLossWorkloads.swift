// The power-loss workloads: guest requests of every kind driven through the
// library on small images (small clusters make L2, L1 and refcount-table
// growth cheap), each recorded for the replayer. Seeded: a workload and a
// seed always make the same run.
import Foundation
@testable import Qcow2

struct PowerLossWorkload: Sendable, CustomStringConvertible {
    enum Kind: Sendable {
        /// Random writes, zero writes, discards (and compressed writes) with
        /// flushes between.
        case mixed(requests: Int, compressed: Bool)
        /// Sequential 64 KiB writes: many L2 tables, refcount blocks and a
        /// refcount table that grows.
        case growth(writes: Int)
        /// Snapshot create, apply and delete between writes.
        case snapshots
        /// Growing (the L1 table grows), writing past the old end, shrinking.
        case resize
        /// The repair on open of a dirty image (lazy refcounts, refcounts
        /// never written), then mixed requests.
        case repairOnOpen(requests: Int)
        /// Fixed requests kept as a regression test.
        case requests([Request])
        /// qemu-img amend of an image prepared with data, then a few
        /// requests through the amended image (PowerLossMaintenance.swift).
        case amend(Amendment)
        /// Persistent dirty bitmaps: requests with enabled bitmaps, add,
        /// clear, merge, remove, and the store on close
        /// (PowerLossMaintenance.swift).
        case bitmaps
        /// A safe rebase onto another backing (qemu-img rebase without -u):
        /// the copy, then the header naming the new backing
        /// (PowerLossMaintenance.swift).
        case rebase
        /// Guest requests through an NBD export of the image: writes (some
        /// FUA), zero writes, trims, flushes (PowerLossNBD.swift).
        case nbd(requests: Int)
    }

    enum Request: Sendable {
        case write(UInt64, Int), flush
    }

    let name: String
    let kind: Kind
    var size: UInt64 = 1 << 20
    var clusterSize: UInt64 = 512
    var refcountBits: UInt64 = 16
    var version: UInt32 = 3
    var extendedL2 = false
    var lazyRefcounts = false
    /// Over a raw backing file of `size` bytes of pattern.
    var backing = false
    /// qemu-img checks at least every Nth state (short maintenance runs).
    var qemuEvery: Int?

    var description: String { name }

    static let all: [PowerLossWorkload] = [
        PowerLossWorkload(name: "mixed 512 B clusters, 16-bit refcounts", kind: .mixed(requests: 40, compressed: true)),
        PowerLossWorkload(name: "mixed 2 KiB clusters, 8-bit refcounts", kind: .mixed(requests: 40, compressed: true),
                          size: 2 << 20, clusterSize: 2048, refcountBits: 8),
        PowerLossWorkload(name: "mixed 4 KiB clusters, 1-bit refcounts", kind: .mixed(requests: 40, compressed: false),
                          size: 2 << 20, clusterSize: 4096, refcountBits: 1),
        PowerLossWorkload(name: "mixed compat 0.10", kind: .mixed(requests: 30, compressed: true), version: 2),
        PowerLossWorkload(name: "copy-on-write from a backing, 4 KiB clusters", kind: .mixed(requests: 40, compressed: false),
                          clusterSize: 4096, backing: true),
        PowerLossWorkload(name: "subclusters (extended L2) over a backing", kind: .mixed(requests: 40, compressed: true),
                          size: 2 << 20, clusterSize: 16384, extendedL2: true, backing: true),
        PowerLossWorkload(name: "lazy refcounts", kind: .mixed(requests: 40, compressed: true), lazyRefcounts: true),
        PowerLossWorkload(name: "repair on open of a dirty image, then requests", kind: .repairOnOpen(requests: 12),
                          lazyRefcounts: true),
        PowerLossWorkload(name: "growth: L2 tables, refcount blocks and table (64-bit refcounts)", kind: .growth(writes: 40),
                          size: 3 << 20, refcountBits: 64),
        PowerLossWorkload(name: "snapshots", kind: .snapshots),
        PowerLossWorkload(name: "resize: L1 growth and shrink", kind: .resize),
    ] + maintenance + nbd

    /// Found by the lazy refcounts workload: with lazy refcounts no
    /// refcount flush comes between a new cluster's data and the L2 entry
    /// pointing to it, so the entry could reach the disk alone, pointing
    /// past the end of the file (a corruption the repair on open cannot
    /// mend). Fixed in CopyOnWrite.swift's `link`.
    static let lazyAllocationRegression = PowerLossWorkload(
        name: "regression: lazy refcounts, L2 entry before its new cluster",
        kind: .requests([.write(0, 512), .flush, .write(4096, 1024), .write(65536, 512), .flush]),
        lazyRefcounts: true)

    /// Creates the image (and its backing) in `dir`; returns the image's path
    /// and the backing's.
    func makeImage(in dir: ScratchDirectory) throws -> (image: String, backing: String?) {
        var backingPath: String?
        if backing {
            let path = dir.file("backing.raw")
            try Data(WriteFixture.pattern(0xb0, count: Int(size))).write(to: URL(fileURLWithPath: path))
            backingPath = path
        }
        var options = Qcow2CreateOptions(size: size)
        options.clusterSize = clusterSize
        options.refcountWidth = RefcountWidth(bits: refcountBits)!
        options.version = Qcow2Version(rawValue: version)!
        options.extendedL2 = extendedL2
        options.lazyRefcounts = lazyRefcounts
        options.backingFile = backingPath
        options.backingFormat = backingPath == nil ? nil : "raw"
        let path = dir.file("image.qcow2")
        try Qcow2Creator.create(path: path, options: options)
        try prepare(path)
        if case .repairOnOpen = kind {
            // Allocating writes made durable with the refcounts left in
            // the cache: the file as a failure would leave it, dirty.
            let image = try WriteFixture.openWritable(path)
            for i in 0..<24 { try WriteFixture.write(image, WriteFixture.pattern(UInt8(i), count: 1536), at: UInt64(i) * 40960) }
            try image.flush()
            let dirty = try Data(contentsOf: URL(fileURLWithPath: path))
            try image.close()
            try dirty.write(to: URL(fileURLWithPath: path))
        }
        return (path, backingPath)
    }

    /// Runs the workload on the image at `path` (already created), recorded.
    func run(path: String, backing: String?, seed: UInt64) throws -> RecordedRun {
        let run = try RecordedRun(path: path, backing: backing)
        var rng = SeededRandom(seed: seed)
        switch kind {
        case let .mixed(requests, compressed):
            try mixed(run, requests: requests, compressed: compressed, rng: &rng)
        case let .repairOnOpen(requests):
            try mixed(run, requests: requests, compressed: true, rng: &rng)
        case let .growth(writes):
            for i in 0..<writes {
                try run.write(UInt64(i) * 65536 % size, 65536, seed: UInt8(truncatingIfNeeded: i))
                if i % 4 == 3 { try run.flush() }
            }
        case .snapshots:
            try snapshots(run, rng: &rng)
        case .resize:
            try resize(run, rng: &rng)
        case let .amend(amendment):
            try amend(run, amendment, rng: &rng)
        case .bitmaps:
            try bitmaps(run, rng: &rng)
        case .rebase:
            try rebase(run, rng: &rng)
        case let .nbd(requests):
            try nbd(run, requests: requests, rng: &rng)
        case let .requests(requests):
            for (i, request) in requests.enumerated() {
                switch request {
                case let .write(offset, count): try run.write(offset, count, seed: UInt8(truncatingIfNeeded: i + 1))
                case .flush: try run.flush()
                }
            }
        }
        return run
    }

    func randomRange(_ rng: inout SeededRandom, maxSectors: Int, within limit: UInt64? = nil) -> (UInt64, Int) {
        let sectors = Int.random(in: 1...maxSectors, using: &rng)
        let offset = UInt64.random(in: 0...((limit ?? size) / 512 - UInt64(sectors)), using: &rng) * 512
        return (offset, sectors * 512)
    }

    private func mixed(_ run: RecordedRun, requests: Int, compressed: Bool, rng: inout SeededRandom) throws {
        let clusters = size / clusterSize
        let maxSectors = Int(clusterSize / 512) * 3
        // Clusters a request may have allocated: compressed writes go only
        // elsewhere (QEMU refuses to compress into an allocated cluster).
        var touched = Set<UInt64>()
        func touch(_ offset: UInt64, _ count: Int) {
            for cluster in (offset / clusterSize)...((offset + UInt64(count) - 1) / clusterSize) { touched.insert(cluster) }
        }
        var sinceFlush = 0
        for i in 0..<requests {
            let roll = Int.random(in: 0..<100, using: &rng)
            let seed = UInt8(truncatingIfNeeded: i + 1)
            if roll < 50 {
                let (offset, count) = randomRange(&rng, maxSectors: maxSectors)
                try run.write(offset, count, seed: seed)
                touch(offset, count)
            } else if roll < 62 {
                let (offset, count) = randomRange(&rng, maxSectors: maxSectors)
                try run.zero(offset, UInt64(count), unmap: Bool.random(using: &rng))
                touch(offset, count)
            } else if roll < 74 {
                let (offset, count) = randomRange(&rng, maxSectors: maxSectors)
                try run.discard(offset, UInt64(count))
            } else {
                let cluster = UInt64.random(in: 0..<clusters, using: &rng)
                if roll < 86, compressed, !touched.contains(cluster) {
                    try run.writeCompressed(cluster * clusterSize, Int(clusterSize), seed: seed)
                } else {
                    // A whole-cluster write: an allocation with no copy on write.
                    try run.write(cluster * clusterSize, Int(clusterSize), seed: seed)
                }
                touched.insert(cluster)
            }
            sinceFlush += 1
            if sinceFlush >= Int.random(in: 2...6, using: &rng) {
                try run.flush()
                sinceFlush = 0
            }
        }
    }

    func scatter(_ run: RecordedRun, _ count: Int, seed: UInt8, within limit: UInt64? = nil,
                         rng: inout SeededRandom) throws {
        for i in 0..<count {
            let (offset, length) = randomRange(&rng, maxSectors: 8, within: limit)
            try run.write(offset, length, seed: seed &+ UInt8(i))
        }
    }

    private func snapshots(_ run: RecordedRun, rng: inout SeededRandom) throws {
        try scatter(run, 6, seed: 1, rng: &rng)
        try run.createSnapshot("one")
        try scatter(run, 6, seed: 20, rng: &rng)
        try run.flush()
        try run.createSnapshot("two")
        try scatter(run, 4, seed: 40, rng: &rng)
        try run.applySnapshot("one")
        try scatter(run, 4, seed: 60, rng: &rng)
        try run.flush()
        try run.deleteSnapshot("two")
        try scatter(run, 3, seed: 80, rng: &rng)
        try run.applySnapshot("one")
        try run.deleteSnapshot("one")
        try run.flush()
    }

    private func resize(_ run: RecordedRun, rng: inout SeededRandom) throws {
        try scatter(run, 6, seed: 1, rng: &rng)
        try run.flush()
        // 1 MiB to 8 MiB: the L1 table (64 entries per 512 B cluster, each
        // mapping 32 KiB) grows from 1 to 4 clusters and moves.
        try run.resize(8 << 20)
        try run.write((8 << 20) - 65536, 65536, seed: 30)
        try run.write(3 << 20, 4096, seed: 31)
        try run.flush()
        try run.resize(512 << 10)
        try scatter(run, 3, seed: 50, within: 512 << 10, rng: &rng)
        try run.flush()
    }
}
