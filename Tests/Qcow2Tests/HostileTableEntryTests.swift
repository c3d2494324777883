// Table entries pointing where they must not: past the end of the file, at
// other metadata, misaligned, with reserved bits, at offsets beyond what a
// file can hold. Each case names the guest disk a correct reader gives (QEMU's
// reading: stored data past the end of the file reads as zeroes), or nil where
// the reader may refuse but any data it gives is acceptable.
import Testing
@testable import Qcow2

struct HostileEntryCase: Sendable, CustomTestStringConvertible {
    var name: String
    var offset: Int
    var value: UInt64
    var expected: [UInt8]?
    /// The image must read (convert must succeed): QEMU reads it too.
    var readable = false
    var testDescription: String { name }
}

@Suite("Hostile images: table entries")
struct HostileTableEntryTests {
    typealias O = HostileImage.Offset
    static let copied = Qcow2EntryMask.copied
    static let cluster = HostileImage.clusterSize

    /// The guest disk with cluster `index` replaced.
    static func guest(replacing index: Int, with bytes: [UInt8]) -> [UInt8] {
        var g = HostileImage.guest
        g.replaceSubrange((index * cluster)..<((index + 1) * cluster), with: bytes)
        return g
    }
    static let zeroCluster = [UInt8](repeating: 0, count: cluster)
    static let emptyDisk = [UInt8](repeating: 0, count: HostileImage.virtualSize)
    static func hostCluster(_ offset: Int) -> [UInt8] { Array(HostileImage().bytes[offset..<(offset + cluster)]) }

    static let cases: [HostileEntryCase] = [
        // L1 entry.
        HostileEntryCase(name: "L1 -> past end of file", offset: O.l1, value: copied | 0x10_0000, expected: emptyDisk),
        HostileEntryCase(name: "L1 -> 2^55", offset: O.l1, value: copied | (1 << 55), expected: emptyDisk),
        HostileEntryCase(name: "L1 -> 0 (copied flag only)", offset: O.l1, value: copied, expected: emptyDisk, readable: true),
        HostileEntryCase(name: "L1 -> refcount table", offset: O.l1, value: copied | UInt64(O.refcountTable),
                         expected: guest(replacing: 0, with: hostCluster(O.refcountBlock)).enumerated().map { i, b in
                             i < cluster ? b : 0 }, readable: true),
        HostileEntryCase(name: "L1 -> itself", offset: O.l1, value: copied | UInt64(O.l1), expected: nil),
        HostileEntryCase(name: "L1 -> misaligned", offset: O.l1, value: copied | UInt64(O.l2 + 8), expected: nil),
        HostileEntryCase(name: "L1 -> header sector 1", offset: O.l1, value: UInt64(0x200), expected: nil),
        HostileEntryCase(name: "L1 reserved bits", offset: O.l1, value: copied | (1 << 60) | UInt64(O.l2), expected: nil),
        HostileEntryCase(name: "L1 all ones", offset: O.l1, value: UInt64.max, expected: nil),
        // L2 entry of guest cluster 0 (standard data).
        HostileEntryCase(name: "L2 -> past end of file", offset: O.l2, value: copied | 0x10_0000,
                         expected: guest(replacing: 0, with: zeroCluster), readable: true),
        HostileEntryCase(name: "L2 -> highest aligned offset", offset: O.l2, value: copied | 0x00ff_ffff_ffff_f000,
                         expected: guest(replacing: 0, with: zeroCluster), readable: true),
        HostileEntryCase(name: "L2 -> refcount table", offset: O.l2, value: copied | UInt64(O.refcountTable),
                         expected: guest(replacing: 0, with: hostCluster(O.refcountTable)), readable: true),
        HostileEntryCase(name: "L2 -> the L2 table", offset: O.l2, value: UInt64(O.l2),
                         expected: guest(replacing: 0, with: hostCluster(O.l2).enumerated().map { i, b in
                             i < 8 ? [0, 0, 0, 0, 0, 0, 0x40, 0][i] : b }), readable: true),
        HostileEntryCase(name: "L2 -> misaligned", offset: O.l2, value: copied | UInt64(O.dataA + 512), expected: nil),
        HostileEntryCase(name: "L2 reserved bits", offset: O.l2, value: copied | UInt64(O.dataA) | 0x100, expected: nil),
        HostileEntryCase(name: "L2 zero flag on allocated cluster", offset: O.l2, value: copied | UInt64(O.dataA) | 1,
                         expected: guest(replacing: 0, with: zeroCluster), readable: true),
        HostileEntryCase(name: "L2 of cluster 1 shares cluster 0's host cluster", offset: O.l2 + 8,
                         value: copied | UInt64(O.dataA), expected: guest(replacing: 1, with: HostileImage.dataA), readable: true),
        // L2 entry of guest cluster 4 (compressed).
        HostileEntryCase(name: "compressed -> past end of file", offset: O.l2 + 32,
                         value: Qcow2EntryMask.compressed | 0x10_0000, expected: HostileImage.guest),
        HostileEntryCase(name: "compressed -> header", offset: O.l2 + 32, value: Qcow2EntryMask.compressed, expected: nil),
        HostileEntryCase(name: "compressed, largest sector count", offset: O.l2 + 32,
                         value: Qcow2EntryMask.compressed | (0xf << 58) | UInt64(O.compressed), expected: HostileImage.guest, readable: true),
        HostileEntryCase(name: "compressed, all descriptor bits", offset: O.l2 + 32,
                         value: Qcow2EntryMask.compressed | ((1 << 62) - 1), expected: HostileImage.guest),
        // Refcount table entry (read by block status's preallocation guess).
        HostileEntryCase(name: "refcount block -> past end of file", offset: O.refcountTable, value: 0x10_0000,
                         expected: HostileImage.guest, readable: true),
        HostileEntryCase(name: "refcount block -> misaligned", offset: O.refcountTable, value: UInt64(O.refcountBlock + 8),
                         expected: HostileImage.guest, readable: true),
        HostileEntryCase(name: "refcount block -> beyond Int64.max", offset: O.refcountTable, value: UInt64.max,
                         expected: HostileImage.guest, readable: true),
        HostileEntryCase(name: "refcount block -> L2 table", offset: O.refcountTable, value: UInt64(O.l2),
                         expected: HostileImage.guest, readable: true),
        // Snapshot table entry (read by info).
        HostileEntryCase(name: "snapshot id and name sizes 0xffff", offset: O.snapshots + 12, value: 0xffff_ffff,
                         expected: HostileImage.guest, readable: true),
        HostileEntryCase(name: "snapshot extra data size max", offset: O.snapshots + 36, value: UInt64(UInt32.max),
                         expected: HostileImage.guest, readable: true),
        HostileEntryCase(name: "snapshot L1 -> past end of file, huge", offset: O.snapshots, value: UInt64.max,
                         expected: HostileImage.guest, readable: true),
        HostileEntryCase(name: "snapshot vm state and clock max", offset: O.snapshots + 24, value: UInt64.max,
                         expected: HostileImage.guest, readable: true),
    ]

    @Test("damaged entries fail cleanly or read correctly", .tags(.hostile), arguments: cases)
    func entry(_ c: HostileEntryCase) throws {
        let scratch = try HostileScratch()
        let path = try scratch.write("entry.qcow2", HostileImage().patching(c.value, at: c.offset).bytes)
        let outcome = HostileReaders.run(path, scratch: scratch)
        HostileReaders.check(outcome, expected: c.expected, c.name)
        if c.readable { #expect(throws: Never.self, "\(c.name): convert") { try outcome.convert.get() } }
    }

    @Test("entries that cannot be read are refused by readers of guest data", .tags(.hostile), arguments: [
        ("L1 misaligned", O.l1, copied | UInt64(O.l2 + 8)), ("L1 reserved bits", O.l1, copied | (1 << 60) | UInt64(O.l2)),
        ("L2 misaligned", O.l2, copied | UInt64(O.dataA + 512)), ("L2 reserved bits", O.l2, copied | UInt64(O.dataA) | 0x100),
        ("compressed past end", O.l2 + 32, Qcow2EntryMask.compressed | 0x10_0000),
    ] as [(String, Int, UInt64)])
    func refusedByReaders(_ name: String, _ offset: Int, _ value: UInt64) throws {
        let scratch = try HostileScratch()
        let path = try scratch.write("entry.qcow2", HostileImage().patching(value, at: offset).bytes)
        let outcome = HostileReaders.run(path, scratch: scratch)
        #expect(throws: (any Error).self, "\(name): convert") { try outcome.convert.get() }
        // info reads no guest data, so it still answers.
        #expect(try outcome.info.get().size == UInt64(HostileImage.virtualSize), "\(name): info")
    }
}
