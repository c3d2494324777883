// `qcowkit snapshot` on images whose snapshot table entry is damaged, against
// `qemu-img snapshot` on copies: the same messages (QEMU's table validation,
// its corruption report, its failed free), exit status and resulting bytes.
import Foundation
import Testing
import TestSupport

@Suite("qcowkit snapshot on damaged snapshot tables, against qemu-img 7.2")
struct SnapshotHostileInteropTests {
    struct Damage: CustomTestStringConvertible, Sendable {
        var name: String
        /// Byte offset in the first entry, and the big-endian bytes put there
        /// (computed from the entry's L1 offset).
        var patch: @Sendable (_ l1Offset: UInt64) -> (at: Int, bytes: [UInt8])
        var testDescription: String { name }
    }

    static func bigEndian(_ value: UInt64, bytes: Int) -> [UInt8] {
        (0..<bytes).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    static let damages: [Damage] = [
        Damage(name: "snapshot L1 table too large") { _ in (8, bigEndian(0x80_0000, bytes: 4)) },
        Damage(name: "snapshot L1 table unaligned") { (0, bigEndian($0 + 0x200, bytes: 8)) },
        Damage(name: "snapshot L1 table past the end of the file") { _ in (0, bigEndian(1 << 32, bytes: 8)) },
    ]

    @Test("apply, delete and create", arguments: damages)
    func damaged(_ damage: Damage) throws {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "image.qcow2", "16M"],
            ["qemu-io", "-c", "write 0 64k", "image.qcow2"],
            ["qemu-img", "snapshot", "-c", "s", "image.qcow2"],
        ])
        // Patch the first entry on the staged image, then copy it to both sides.
        let staged = twins.stage.appendingPathComponent("image.qcow2")
        var bytes = [UInt8](try Data(contentsOf: staged))
        let be = { (at: Int, count: Int) in bytes[at..<at + count].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
        let entry = Int(be(64, 8))
        let (at, patch) = damage.patch(be(entry, 8))
        bytes.replaceSubrange(entry + at..<entry + at + patch.count, with: patch)
        try Data(bytes).write(to: staged)

        for arguments in [["-a", "s"], ["-d", "s"], ["-c", "n"]] {
            try twins.syncCopies()
            let context = Comment(rawValue: "snapshot \(arguments.joined(separator: " "))")
            SnapshotInterop.expectSame(try twins.snapshot(arguments + ["image.qcow2"]), context)
            #expect(try twins.difference("image.qcow2") == nil, context)
        }
    }
}
