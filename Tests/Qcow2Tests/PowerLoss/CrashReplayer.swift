// The replaying half of the power-loss tests: crash states built from a
// recorded run. After a power failure only what a sync made durable is
// certain; the operations since the last sync may each have reached the
// disk or not, in any order. So for every flush boundary (the base counts as
// one) the states are: the file as of that sync plus
//   (a) none of the operations since,
//   (b) each one of them alone,
//   (c) seeded random subsets of them, applied in random orders,
// at most `Budget` of (b) and (c) per boundary; and (d), if asked, states
// with one write torn at sector granularity (disks promise no more).
@testable import Qcow2

struct CrashState {
    /// The index of the last sync applied (-1: the base).
    let boundary: Int
    /// Where the failure cut the log: the next sync's index (or the log's end).
    let cut: Int
    /// Which operations since the sync were applied, in the order applied.
    let applied: [Int]
    let kind: String
    let file: [UInt8]

    var label: String { "boundary \(boundary) cut \(cut) \(kind) ops \(applied)" }
}

struct CrashReplayer {
    struct Budget {
        /// Single-operation states per boundary (all when there are fewer).
        var singles: Int
        /// Random subset states per boundary.
        var subsets: Int
        /// States per boundary with one write torn: some of its 512-byte
        /// sectors written, the others not (with a random subset of the
        /// other operations).
        var torn: Int = 0
        /// Boundaries visited (a seeded sample when there are more; the
        /// first and the last always).
        var boundaries: Int = .max
    }

    let base: [UInt8]
    let operations: [BlockFileOperation]

    /// Every boundary's states, boundary by boundary, handed to `visit`.
    func forEachState(seed: UInt64, budget: Budget, _ visit: (CrashState) throws -> Void) rethrows {
        var rng = SeededRandom(seed: seed)
        let syncs = operations.indices.filter { operations[$0].isFlush }
        var visited = Set([-1] + syncs)
        if visited.count > budget.boundaries {
            visited = Set([-1, syncs.last ?? -1] + syncs.shuffled(using: &rng).prefix(max(0, budget.boundaries - 2)))
        }
        var durable = base
        var boundary = -1
        while boundary < operations.count {
            let start = boundary + 1
            let cut = operations[start...].firstIndex { $0.isFlush } ?? operations.count
            defer {
                // On to the next boundary: everything up to and including its sync.
                for index in start..<min(cut + 1, operations.count) { operations[index].apply(to: &durable) }
                boundary = cut
            }
            guard visited.contains(boundary) else { continue }
            let pending = Array(start..<cut)
            try visit(CrashState(boundary: boundary, cut: cut, applied: [], kind: "none", file: durable))
            var singles = pending
            if singles.count > budget.singles {
                singles.shuffle(using: &rng)
                singles = Array(singles.prefix(budget.singles)).sorted()
            }
            for index in singles {
                var file = durable
                operations[index].apply(to: &file)
                try visit(CrashState(boundary: boundary, cut: cut, applied: [index], kind: "single", file: file))
            }
            if pending.count > 1 {
                for _ in 0..<budget.subsets {
                    var chosen = pending.filter { _ in Bool.random(using: &rng) }
                    chosen.shuffle(using: &rng)
                    guard chosen.count > 1 else { continue }
                    var file = durable
                    for index in chosen { operations[index].apply(to: &file) }
                    try visit(CrashState(boundary: boundary, cut: cut, applied: chosen, kind: "subset", file: file))
                }
            }
            let tearable = pending.filter {
                if case let .write(offset, bytes) = operations[$0] { return bytes.count > 512 && offset % 512 == 0 }
                return false
            }
            if !tearable.isEmpty {
                for _ in 0..<budget.torn {
                    let victim = tearable.randomElement(using: &rng)!
                    guard case let .write(offset, bytes) = operations[victim] else { continue }
                    var chosen = pending.filter { $0 != victim && Bool.random(using: &rng) }
                    chosen.shuffle(using: &rng)
                    var file = durable
                    for index in chosen { operations[index].apply(to: &file) }
                    let sectors = (bytes.count + 511) / 512
                    var kept: [Int] = []
                    for sector in 0..<sectors where Bool.random(using: &rng) {
                        kept.append(sector)
                        let range = (sector * 512)..<min(sector * 512 + 512, bytes.count)
                        BlockFileOperation.write(offset: offset + UInt64(range.lowerBound), bytes: Array(bytes[range])).apply(to: &file)
                    }
                    guard !kept.isEmpty, kept.count < sectors else { continue }
                    try visit(CrashState(boundary: boundary, cut: cut, applied: chosen,
                                         kind: "torn op \(victim) sectors \(kept)", file: file))
                }
            }
        }
    }
}
