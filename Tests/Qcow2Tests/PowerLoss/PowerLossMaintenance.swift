// The power-loss workloads of image maintenance: amend (refcount width,
// compat downgrade with zero clusters, upgrade), persistent dirty bitmaps,
// and a safe rebase (whose guest view must not change, whichever backing
// the header names).
// The image is prepared unrecorded (data, zero clusters, snapshots, stored
// bitmaps), then the maintenance and a few requests after it are recorded.
// What "consistent" means for each, beyond the common checks, is in
// StateExpectation.swift.
import Foundation
@testable import Qcow2

extension PowerLossWorkload {
    struct Amendment: Sendable {
        var refcountBits: UInt64?
        var version: UInt32?
        /// Zero clusters of every kind prepared (plain over the backing,
        /// preallocated, in a snapshot too when there is one).
        var zeroClusters = false
        /// An internal snapshot prepared (shared clusters, refcount 2).
        var snapshot = false
    }

    static let maintenance: [PowerLossWorkload] = [
        PowerLossWorkload(name: "amend refcount_bits 16 -> 64, data and a snapshot",
                          kind: .amend(Amendment(refcountBits: 64, snapshot: true)), qemuEvery: 8),
        PowerLossWorkload(name: "amend refcount_bits 16 -> 1, data", kind: .amend(Amendment(refcountBits: 1)), qemuEvery: 8),
        downgrade,
        PowerLossWorkload(name: "amend compat 0.10 -> 1.1, a snapshot",
                          kind: .amend(Amendment(version: 3, snapshot: true)), version: 2, qemuEvery: 8),
        PowerLossWorkload(name: "rebase (safe) onto another backing, 512 B clusters", kind: .rebase, backing: true,
                          qemuEvery: 8),
        PowerLossWorkload(name: "bitmaps: enabled bitmaps, add, clear, merge, remove, store on close", kind: .bitmaps,
                          qemuEvery: 8),
    ]

    /// Found a version 2 header reaching the disk before a snapshot's L2
    /// table rewritten without its zero flags (no sync between): fixed in
    /// ZeroClusterExpansion.swift; pinned by PowerLossTests.downgradeRegression.
    static let downgrade = PowerLossWorkload(
        name: "amend compat 1.1 -> 0.10, zero clusters over a backing and a snapshot",
        kind: .amend(Amendment(version: 2, zeroClusters: true, snapshot: true)), backing: true, qemuEvery: 8)

    var hasBitmaps: Bool {
        if case .bitmaps = kind { return true }
        return false
    }

    /// The unrecorded preparation of the image at `path` (just created).
    func prepare(_ path: String) throws {
        switch kind {
        case let .amend(amendment):
            let image = try WriteFixture.openWritable(path)
            let stride = size / 24 / 512 * 512
            for i in 0..<16 { try WriteFixture.write(image, WriteFixture.pattern(UInt8(i), count: 1536), at: UInt64(i) * stride) }
            if amendment.zeroClusters {
                // Preallocated zero clusters (over data) and plain ones over
                // the backing, before the snapshot: its L2 tables hold them.
                for i in 0..<4 { try image.writeZeroes(at: UInt64(i) * stride + 512, length: 1024, mayUnmap: false) }
                for i in 0..<4 { try image.writeZeroes(at: UInt64(i) * stride + stride / 1024 * 512, length: 2048, mayUnmap: false) }
            }
            if amendment.snapshot {
                _ = try image.createSnapshot(name: "prepared", date: (1, 0))
                // Some shared clusters copied, some left shared; the L2
                // tables written to are copied, leaving the snapshot's own.
                for i in 0..<4 { try WriteFixture.write(image, WriteFixture.pattern(UInt8(40 + i), count: 512), at: UInt64(i) * 2 * stride) }
            }
            if amendment.zeroClusters {
                // Unmapped zero clusters, and zero clusters only the active table has.
                try image.writeZeroes(at: 5 * stride, length: 1536, mayUnmap: true)
                try image.writeZeroes(at: 7 * stride + 1024, length: 1024, mayUnmap: false)
            }
            try image.close()
        case .bitmaps:
            let image = try WriteFixture.openWritable(path)
            // Data from before the bitmaps (clean in them), then some after.
            for i in 0..<6 { try WriteFixture.write(image, WriteFixture.pattern(UInt8(i), count: 1024), at: UInt64(i) * 90112) }
            try image.addDirtyBitmap("a", granularity: nil, persistent: true, disabled: false, node: "image")
            try image.addDirtyBitmap("b", granularity: 4096, persistent: true, disabled: false, node: "image")
            try image.addDirtyBitmap("c", granularity: 1024, persistent: true, disabled: true, node: "image")
            for i in 0..<3 { try WriteFixture.write(image, WriteFixture.pattern(UInt8(i), count: 1024), at: UInt64(i) * 90112 + 45056) }
            try image.close()
        case .rebase:
            // The new backing: as the old one for 512 KiB, then 128 KiB
            // that differ, then its end (the old backing's tail becomes
            // zero writes); the image allocates some clusters itself.
            let old = WriteFixture.pattern(0xb0, count: Int(size))
            try Data(old.prefix(512 << 10) + WriteFixture.pattern(0xc0, count: 128 << 10))
                .write(to: URL(fileURLWithPath: Self.newBacking(path)))
            let image = try WriteFixture.openWritable(path)
            for i in 0..<8 { try WriteFixture.write(image, WriteFixture.pattern(UInt8(i), count: 1024), at: UInt64(i) * 131072 + 4096) }
            try image.close()
        default:
            break
        }
    }

    /// Where the rebase workload's new backing is, beside the image.
    static func newBacking(_ image: String) -> String {
        URL(fileURLWithPath: image).deletingLastPathComponent().appendingPathComponent("new-backing.raw").path
    }

    func rebase(_ run: RecordedRun, rng: inout SeededRandom) throws {
        try scatter(run, 3, seed: 1, rng: &rng)
        try run.flush()
        try run.rebase(onto: Self.newBacking(run.path))
        try scatter(run, 3, seed: 30, rng: &rng)
        try run.flush()
    }

    func amend(_ run: RecordedRun, _ amendment: Amendment, rng: inout SeededRandom) throws {
        var request = Qcow2AmendRequest()
        request.version = amendment.version
        request.refcountWidth = amendment.refcountBits.map { RefcountWidth(bits: $0)! }
        try run.amend(request, label: [amendment.refcountBits.map { "refcount_bits=\($0)" },
                                       amendment.version.map { "compat=\($0 == 2 ? "0.10" : "1.1")" }]
            .compactMap { $0 }.joined(separator: ","))
        // The amended image in use.
        try scatter(run, 4, seed: 90, rng: &rng)
        try run.flush()
    }

    func bitmaps(_ run: RecordedRun, rng: inout SeededRandom) throws {
        // Overwrites in place first (the prepared clusters): visible to the
        // guest with no metadata write, so only the in-use marking made
        // durable before them keeps the bitmaps honest.
        try run.write(0, 1024, seed: 200)
        try run.write(90112 + 512, 512, seed: 201)
        try scatter(run, 4, seed: 1, rng: &rng)
        try run.flush()
        try run.bitmaps("clear a") { try $0.clearDirtyBitmap("a") }
        try scatter(run, 3, seed: 20, rng: &rng)
        try run.bitmaps("add d") { try $0.addDirtyBitmap("d", granularity: nil, persistent: true, disabled: false, node: "image") }
        try run.bitmaps("merge a into c") { try $0.mergeDirtyBitmap(into: "c", from: try $0.dirtyBitmap(named: "a")) }
        try scatter(run, 3, seed: 40, rng: &rng)
        try run.flush()
        try run.bitmaps("remove b") { try $0.removeDirtyBitmap("b") }
        try scatter(run, 2, seed: 60, rng: &rng)
        try run.flush()
        // The close (RecordedRun.close) stores them.
    }
}
