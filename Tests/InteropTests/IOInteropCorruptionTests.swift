// Corruption found at run time, against qemu-io 7.2: an L2 entry that points
// a guest cluster at the active L1 table. The first write there is refused,
// the image marked corrupt and that said once in QEMU's words ("qcow2:
// Marking image as corrupt: ...; further corruption events will be
// suppressed"); later writes fail without it. Same output, status and image.
// Not compared: reads after the event, which QEMU fails too (its node loses
// its driver: "No medium found") and QcowKit still serves.
import Foundation
import Testing

@Suite("qcowkit io = qemu-io: corruption found while writing")
struct IOInteropCorruptionTests {
    @Test("a guest write over the L1 table marks the image corrupt, reported once")
    func writeOverMetadata() throws {
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

        let (qemu, ours) = try twins.run(["-f", "qcow2", "-c", "write -P 1 0 512", "-c", "write -P 2 64k 512", "c.qcow2"])
        #expect(qemu.error.contains("Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L1 table)"))
        #expect(ours == qemu)
        #expect(try twins.bytes("c.qcow2", in: twins.ours) == twins.bytes("c.qcow2", in: twins.qemu))
    }
}
