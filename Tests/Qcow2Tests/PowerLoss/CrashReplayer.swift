// The replaying half of the power-loss tests: crash states built from a
// recorded run. After a power failure only what a sync made durable is
// certain, and a sync (fdatasync) covers only its own file: the operations
// on a file since that file's last sync may each have reached the disk or
// not, in any order. So for every flush boundary of the run (any file's
// sync; the bases count as one), with the failure cut at the next sync, the
// states are: every file as of its own last sync plus
//   (a) none of the operations since,
//   (b) each one of them alone,
//   (c) seeded random subsets of them, applied in random orders,
// at most `Budget` of (b) and (c) per boundary; and (d), if asked, states
// with one write torn at sector granularity (disks promise no more). With
// one file this is "the file as of the sync plus what came after".
@testable import Qcow2

struct CrashState {
    /// The index of the last sync applied (-1: the bases).
    let boundary: Int
    /// Where the failure cut the log: the next sync's index (or the log's end).
    let cut: Int
    /// Which operations were applied beyond each file's last sync, in the
    /// order applied.
    let applied: [Int]
    let kind: String
    /// Every file of the run, by name.
    let files: [String: [UInt8]]

    /// The file of a one-file run.
    var file: [UInt8] { files.values.first! }

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

    /// Every file's bytes before the run, by name.
    let bases: [String: [UInt8]]
    let operations: [RecordedOperation]

    init(bases: [String: [UInt8]], operations: [RecordedOperation]) {
        self.bases = bases
        self.operations = operations
    }

    /// A one-file run.
    init(base: [UInt8], operations: [BlockFileOperation]) {
        self.init(bases: ["file": base], operations: operations.map { RecordedOperation(file: "file", operation: $0) })
    }

    /// Every boundary's states, boundary by boundary, handed to `visit`.
    func forEachState(seed: UInt64, budget: Budget, _ visit: (CrashState) throws -> Void) rethrows {
        var rng = SeededRandom(seed: seed)
        let syncs = operations.indices.filter { operations[$0].isFlush }
        var visited = Set([-1] + syncs)
        if visited.count > budget.boundaries {
            visited = Set([-1, syncs.last ?? -1] + syncs.shuffled(using: &rng).prefix(max(0, budget.boundaries - 2)))
        }
        var durable = bases
        // Each file's last sync applied to `durable` (-1: none yet).
        var lastSync = Dictionary(uniqueKeysWithValues: Set(bases.keys).union(operations.map(\.file)).map { ($0, -1) })
        var boundary = -1
        while boundary < operations.count {
            let start = boundary + 1
            let cut = operations[start...].firstIndex { $0.isFlush } ?? operations.count
            defer {
                // On to the next boundary: its file's operations up to its sync.
                if cut < operations.count {
                    let name = operations[cut].file
                    for index in (lastSync[name]! + 1)..<cut where operations[index].file == name {
                        operations[index].operation.apply(to: &durable[name, default: []])
                    }
                    lastSync[name] = cut
                }
                boundary = cut
            }
            guard visited.contains(boundary) else { continue }
            let earliest = (lastSync.values.min() ?? -1) + 1
            let pending = (earliest..<cut).filter { !operations[$0].isFlush && $0 > lastSync[operations[$0].file]! }
            func state(_ applied: [Int], _ kind: String, torn: (Int, [Int])? = nil) -> CrashState {
                var files = durable
                for index in applied { operations[index].operation.apply(to: &files[operations[index].file, default: []]) }
                if let (victim, sectors) = torn, case let .write(offset, bytes) = operations[victim].operation {
                    for sector in sectors {
                        let range = (sector * 512)..<min(sector * 512 + 512, bytes.count)
                        BlockFileOperation.write(offset: offset + UInt64(range.lowerBound), bytes: Array(bytes[range]))
                            .apply(to: &files[operations[victim].file, default: []])
                    }
                }
                return CrashState(boundary: boundary, cut: cut, applied: applied, kind: kind, files: files)
            }
            try visit(state([], "none"))
            var singles = pending
            if singles.count > budget.singles {
                singles.shuffle(using: &rng)
                singles = Array(singles.prefix(budget.singles)).sorted()
            }
            for index in singles { try visit(state([index], "single")) }
            if pending.count > 1 {
                for _ in 0..<budget.subsets {
                    var chosen = pending.filter { _ in Bool.random(using: &rng) }
                    chosen.shuffle(using: &rng)
                    guard chosen.count > 1 else { continue }
                    try visit(state(chosen, "subset"))
                }
            }
            let tearable = pending.filter {
                if case let .write(offset, bytes) = operations[$0].operation { return bytes.count > 512 && offset % 512 == 0 }
                return false
            }
            if !tearable.isEmpty {
                for _ in 0..<budget.torn {
                    let victim = tearable.randomElement(using: &rng)!
                    guard case let .write(_, bytes) = operations[victim].operation else { continue }
                    var chosen = pending.filter { $0 != victim && Bool.random(using: &rng) }
                    chosen.shuffle(using: &rng)
                    let sectors = (bytes.count + 511) / 512
                    let kept = (0..<sectors).filter { _ in Bool.random(using: &rng) }
                    guard !kept.isEmpty, kept.count < sectors else { continue }
                    try visit(state(chosen, "torn op \(victim) sectors \(kept)", torn: (victim, kept)))
                }
            }
        }
    }
}
