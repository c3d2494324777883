// Corruption found at run time, against qemu-io 7.2: an L2 entry that points
// a guest cluster at the active L1 table. The first write there is refused,
// the image marked corrupt and that said once in QEMU's words ("qcow2:
// Marking image as corrupt: ...; further corruption events will be
// suppressed"); later writes fail without it. After the event the image
// answers no more I/O: QEMU's node loses its driver ("No medium found") for
// reads, mapping, length and info too. Same output, status and image.
import Foundation
import Testing

@Suite("qcowkit io = qemu-io: corruption found while writing")
struct IOInteropCorruptionTests {
    @Test("a guest write over the L1 table marks the image corrupt, reported once")
    func writeOverMetadata() throws {
        let twins = try Self.corruptTwins()
        let (qemu, ours) = try twins.run(["-f", "qcow2", "-c", "write -P 1 0 512", "-c", "write -P 2 64k 512", "c.qcow2"])
        #expect(qemu.error.contains("Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L1 table)"))
        #expect(ours == qemu)
        #expect(try twins.bytes("c.qcow2", in: twins.ours) == twins.bytes("c.qcow2", in: twins.qemu))
    }

    @Test("after the event nothing is read or mapped any more: No medium found")
    func noMediumAfterTheEvent() throws {
        let twins = try Self.corruptTwins()
        let commands = ["write -P 1 0 512", "read -P 0 128k 512", "read 0 512", "readv 0 512", "alloc 0 512", "map",
                        "flush", "discard 128k 64k", "write -z 192k 4k", "length", "info", "aio_read 0 512", "aio_flush"]
        let (qemu, ours) = try twins.run(["-f", "qcow2"] + commands.flatMap { ["-c", $0] } + ["c.qcow2"])
        #expect(qemu.output.contains("read failed: No medium found"))
        #expect(qemu.output.contains("getlength: No medium found"))
        #expect(ours == qemu)
        #expect(try twins.bytes("c.qcow2", in: twins.ours) == twins.bytes("c.qcow2", in: twins.qemu))
    }

    /// Twin copies of an image whose cluster 0 is mapped (COPIED) onto the
    /// active L1 table: the first guest write there is over metadata.
    private static func corruptTwins() throws -> IOTwinDirectories {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "c.qcow2", "1M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 7 0 64k", "c.qcow2"],
        ])
        // Cluster 0's L2 entry: COPIED, at the active L1 table's offset.
        let url = twins.stage.appendingPathComponent("c.qcow2")
        var image = [UInt8](try Data(contentsOf: url))
        func be64(_ at: Int) -> UInt64 { image[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        let l1 = be64(40)
        let l2 = Int(be64(Int(l1)) & 0x00ff_ffff_ffff_fe00)
        let entry = (UInt64(1) << 63) | l1
        for index in 0..<8 { image[l2 + index] = UInt8(truncatingIfNeeded: entry >> (56 - 8 * UInt64(index))) }
        try Data(image).write(to: url)
        try twins.syncCopies()
        return twins
    }
}
