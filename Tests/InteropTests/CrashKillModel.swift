// What the guest may read after the writer was killed. The workload stays in
// a few windows of the virtual disk (far apart, so that a large virtual size
// spreads its L2 tables over the L1 table); the model holds their contents as
// of the last acknowledged flush. Commands that ran after that flush (the
// interrupted one included) may or may not have reached the file, in any
// combination, torn at any point: each byte may hold any value it had since
// the flush, and nothing else.
import Foundation

/// One command of the workload: a guest operation or a flush.
enum CrashCommand: CustomStringConvertible {
    case op(WriteOp)
    case flush

    var line: String {
        switch self {
        case let .op(op): return op.qemuIOCommand(randomFile: "")
        case .flush: return "flush"
        }
    }

    var description: String { line }
}

struct CrashWindow: Sendable {
    var start: UInt64
    var length: UInt64
}

struct CrashModel {
    let clusterSize: UInt64
    let windows: [CrashWindow]
    /// Contents of each window as of the last acknowledged flush.
    var bytes: [[UInt8]]

    init(clusterSize: UInt64, windows: [CrashWindow]) {
        self.clusterSize = clusterSize
        self.windows = windows
        bytes = windows.map { [UInt8](repeating: 0, count: Int($0.length)) }
    }

    /// The window holding [offset, offset + length), and the index there.
    func locate(_ offset: UInt64, _ length: UInt64) -> (window: Int, index: Int)? {
        for (w, window) in windows.enumerated()
        where offset >= window.start && offset + length <= window.start + window.length {
            return (w, Int(offset - window.start))
        }
        return nil
    }

    /// The bytes `op` changes, as (window, range in it, new value): QEMU's
    /// rules (WriteGuestModel): discards zero only whole clusters.
    func effect(of op: WriteOp) -> (window: Int, range: Range<Int>, value: UInt8)? {
        switch op {
        case let .write(o, l, p), let .compressed(o, l, p):
            guard let (w, i) = locate(o, l) else { return nil }
            return (w, i..<(i + Int(l)), p)
        case let .zeroes(o, l, _):
            guard let (w, i) = locate(o, l) else { return nil }
            return (w, i..<(i + Int(l)), 0)
        case let .discard(o, l):
            let start = (o + clusterSize - 1) / clusterSize * clusterSize
            let end = (o + l) / clusterSize * clusterSize
            guard end > start, let (w, i) = locate(start, end - start) else { return nil }
            return (w, i..<(i + Int(end - start)), 0)
        case .writeRandom, .compressedRandom:
            return nil
        }
    }

    mutating func apply(_ op: WriteOp) {
        guard let (w, range, value) = effect(of: op) else { return }
        bytes[w].replaceSubrange(range, with: repeatElement(value, count: range.count))
    }

    /// Every byte's possible values once `pending` may have run (each may
    /// or may not have): per window, the values besides the flushed one.
    func alternatives(after pending: [WriteOp]) -> [[Int: Set<UInt8>]] {
        var extra = windows.map { _ in [Int: Set<UInt8>]() }
        for op in pending {
            guard let (w, range, value) = effect(of: op) else { continue }
            for i in range where value != bytes[w][i] { extra[w][i, default: []].insert(value) }
        }
        return extra
    }
}

/// Seeded workloads: writes, zero writes, discards and compressed writes in
/// the windows, mostly small and unaligned, some large, with flushes between.
struct CrashWorkload {
    var random: WriteRandom
    let clusterSize: UInt64
    let windows: [CrashWindow]
    /// Largest write, to allocate many clusters (and refcount blocks) at once.
    let largeWrite: UInt64
    /// How many commands in a hundred are large.
    var largePercent: UInt64 = 10
    var nextPattern: UInt8 = 1

    mutating func below(_ n: UInt64) -> UInt64 { n == 0 ? 0 : random.next() % n }

    private mutating func pattern() -> UInt8 {
        // Values cycle through 1...255, so that old and new data differ.
        defer { nextPattern = nextPattern == 255 ? 1 : nextPattern + 1 }
        return nextPattern
    }

    mutating func commands(_ count: Int) -> [CrashCommand] {
        (0..<count).map { _ in command() }
    }

    mutating func command() -> CrashCommand {
        let cs = clusterSize
        let window = windows[Int(below(UInt64(windows.count)))]
        let end = window.start + window.length
        var offset: UInt64
        switch below(10) {
        case 0..<4: offset = window.start + below(window.length / cs) * cs
        case 4..<7: offset = window.start + below(window.length / 512) * 512
        default: offset = window.start + below(window.length)
        }
        var length: UInt64
        if below(100) < largePercent {
            length = largeWrite / 2 + below(largeWrite / 2)
        } else {
            switch below(3) {
            case 0: length = 1 + below(2 * cs)
            case 1: length = cs * (1 + below(4))
            default: length = 1 + below(8 * cs + 4096)
            }
        }
        length = min(length, end - offset)
        switch below(100) {
        case 0..<40: return .op(.write(offset, length, pattern: pattern()))
        case 40..<48: return .op(.zeroes(offset, length, unmap: false))
        case 48..<55: return .op(.zeroes(offset, length, unmap: true))
        case 55..<65: return .op(.discard(offset, length))
        case 65..<80:
            // One cluster: a compressed write into an allocated cluster fails
            // as a whole (EIO), never half.
            let cluster = window.start + below(window.length / cs) * cs
            return .op(.compressed(cluster, cs, pattern: pattern()))
        default: return .flush
        }
    }
}

/// Reading the windows back with qemu-io (or `qcowkit io`, same commands):
/// `read -P` for bytes with one possible value, `read -v` (a hex dump) for
/// bytes with several, whose actual values are taken from the dump.
enum CrashReadBack {
    static func commands(_ model: CrashModel, alternatives: [[Int: Set<UInt8>]]) -> [String] {
        var commands: [String] = []
        for (w, window) in model.windows.enumerated() {
            let bytes = model.bytes[w]
            let extra = alternatives[w]
            var i = 0
            while i < bytes.count {
                var j = i + 1
                if extra[i] != nil {
                    while j < bytes.count && extra[j] != nil { j += 1 }
                    commands.append("read -v \(window.start + UInt64(i)) \(j - i)")
                } else {
                    while j < bytes.count && extra[j] == nil && bytes[j] == bytes[i] { j += 1 }
                    commands.append("read -P \(bytes[i]) \(window.start + UInt64(i)) \(j - i)")
                }
                i = j
            }
        }
        return commands
    }

    /// The commands that failed, with why: every read prints its report
    /// line ("read N/N bytes at offset X") unless it fails outright, and a
    /// pattern mismatch is printed before the report.
    static func failures(_ output: String, commands: [String]) -> [String] {
        var failures: [String] = []
        var index = 0
        for line in output.split(separator: "\n") {
            let command = index < commands.count ? commands[index] : "?"
            if line.hasPrefix("read ") && line.contains(" bytes at offset ") {
                index += 1
            } else if line.hasPrefix("Pattern verification failed") {
                failures.append("\(command): \(line)")
            } else if line.contains("failed") {
                failures.append("\(command): \(line)")
                index += 1
            }
        }
        return failures
    }

    /// The output without timing lines (which differ from run to run).
    static func stable(_ output: String) -> String {
        output.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains(" ops; ") }
            .joined(separator: "\n")
    }

    /// The bytes of qemu-io's hex dumps ("%08x:  " then "%02x " per byte,
    /// then a space and the characters), by guest offset.
    static func dumpedBytes(_ output: String) -> [UInt64: UInt8] {
        var bytes: [UInt64: UInt8] = [:]
        for line in output.split(separator: "\n") {
            let utf8 = Array(line.utf8)
            guard let colon = utf8.firstIndex(of: UInt8(ascii: ":")), colon >= 8,
                  colon + 2 < utf8.count, utf8[colon + 1] == 32, utf8[colon + 2] == 32,
                  let offset = UInt64(String(decoding: utf8[0..<colon], as: UTF8.self), radix: 16)
            else { continue }
            var p = colon + 3
            var k: UInt64 = 0
            while p + 2 < utf8.count, utf8[p] != 32, utf8[p + 2] == 32,
                  let value = UInt8(String(decoding: utf8[p..<(p + 2)], as: UTF8.self), radix: 16) {
                bytes[offset + k] = value
                k += 1
                p += 3
            }
        }
        return bytes
    }
}
