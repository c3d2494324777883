// The image cut short at every length through its first cluster and beyond,
// then in steps through the rest: metadata that is cut off is an error,
// stored data that is cut off reads as zeroes.
import Testing
@testable import Qcow2

@Suite("Hostile images: truncated files")
struct HostileTruncationTests {
    /// Every 61st length (a step that lands on every offset within a sector
    /// over the file), and with the snapshot table, where cuts through the
    /// first cluster fail header checks, also every length from 0 to one
    /// cluster + 1 KiB.
    static func lengths(everyByteOfFirstCluster: Bool) -> [Int] {
        let head = everyByteOfFirstCluster ? Array(0...(HostileImage.clusterSize + 1024)) : []
        return head + stride(from: head.count, to: HostileImage.fileLength, by: 61)
    }

    @Test("truncated images fail cleanly or read what is left", .tags(.hostile),
          arguments: [true, false])
    func truncated(withSnapshot: Bool) throws {
        var image = HostileImage()
        if !withSnapshot {
            // Without the snapshot table at the end, cuts through the data
            // clusters leave an image that opens.
            image = image.patching(0, at: 60, width: 4).patching(0, at: 64)
        }
        let scratch = try HostileScratch()
        var mapped = 0
        let lengths = Self.lengths(everyByteOfFirstCluster: withSnapshot)
        for length in lengths {
            let path = try scratch.write("cut.qcow2", Array(image.bytes.prefix(length)))
            let outcome = HostileReaders.run(path, scratch: scratch)
            if length < 8 {
                // Too short for the magic and a version: probed as raw.
                let raw = Array(image.bytes.prefix(length)) + [UInt8](repeating: 0, count: (512 - length % 512) % 512)
                HostileReaders.check(outcome, expected: raw, "cut at \(length)")
                continue
            }
            let (guest, unknown) = HostileImage.expectedGuest(truncatedTo: length)
            HostileReaders.check(outcome, expected: guest, unknown: unknown, "cut at \(length)")
            if (try? outcome.map.get()) != nil { mapped += 1 }
        }
        // Block status needs the header's tables whole (refcount table, L1,
        // the fixed part of the snapshot table) and the L2 table to start
        // inside the file (the rest of it reads as zeroes, as in QEMU):
        // exactly the cuts from there on must open, all shorter ones must not.
        let whole = withSnapshot ? HostileImage.Offset.snapshots + SnapshotEntry.headerSize
            : HostileImage.Offset.l2 + 1
        #expect(mapped == lengths.filter { $0 >= whole }.count)
    }
}
