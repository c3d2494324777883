// Emptying an image after its data was committed into its backing file
// (QEMU 7.2's qcow2_make_empty, which `qemu-img commit` calls unless -d):
// afterwards every cluster reads from the backing file again.
//
// A version 3 image without snapshots or bitmaps, whose L1 table and first
// three clusters fit one refcount block, is rebuilt from scratch
// (make_completely_empty):
//  1. both caches are written back and dropped; the image is marked dirty,
//     since the refcounts are about to be wrong on disk;
//  2. the L1 table's clusters are zeroed, then clusters 1 and 2 and as many
//     more as the L1 table needs;
//  3. the header points at a refcount table in cluster 1 (one cluster) and
//     an L1 table in cluster 3 (its size unchanged), synced; the table's
//     first entry names a refcount block in cluster 2, synced;
//  4. the header, both tables and the block are allocated from cluster 0
//     on; the image is marked clean (caches written, header rewritten);
//  5. the file is cut after the L1 table.
// A crash after step 1 leaves a dirty image, whose refcounts the next
// writable open rebuilds (and QEMU's check -r all repairs).
// Any other image has every cluster discarded for good, in steps of at most
// INT_MAX bytes, with discards passed through to the file.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image {
    /// qcow2_make_empty: drops every cluster the image maps, so that all of
    /// it reads from the backing file. Throws `Qcow2Error`.
    package func makeEmpty() throws {
        let hasBitmaps = extensions.contains {
            if case .bitmaps = $0 { return true }
            return false
        }
        try withWriter { writer, _ in
            try writer.guarded { try writer.makeEmpty(hasBitmaps: hasBitmaps) }
        }
    }
}

extension Qcow2Writer {
    func makeEmpty(hasBitmaps: Bool) throws {
        let l1Clusters = divideRoundingUp(UInt64(map.l1.count) * 8, clusterSize)
        if version >= 3 && snapshots.entries.isEmpty && !hasBitmaps && 3 + l1Clusters <= allocator.refblockSize {
            try makeCompletelyEmpty(l1Clusters: l1Clusters)
            return
        }
        let step = UInt64(Int32.max) & ~(clusterSize - 1)
        var offset: UInt64 = 0
        while offset < imageSize {
            try discardClusters(offset: offset, length: min(step, imageSize - offset), type: .snapshot, fullDiscard: true)
            offset += step
        }
    }

    private func makeCompletelyEmpty(l1Clusters: UInt64) throws {
        try map.l2Tables.flush()
        map.l2Tables.removeAll()
        try allocator.blocks.flush()
        allocator.blocks.removeAll()
        try markDirty()

        try file.write([UInt8](repeating: 0, count: Int(l1Clusters * clusterSize)), at: header.l1TableOffset)
        map.l1 = [UInt64](repeating: 0, count: map.l1.count)
        try file.write([UInt8](repeating: 0, count: Int((2 + l1Clusters) * clusterSize)), at: clusterSize)

        try writeL1TableLocation(offset: 3 * clusterSize, entries: UInt32(map.l1.count))
        try writeRefcountTableLocation(offset: clusterSize, clusters: 1)
        var table = [UInt64](repeating: 0, count: Int(clusterSize / 8))
        var entry = [UInt8](repeating: 0, count: 8)
        entry.setBE(2 * clusterSize, at: 0)
        try file.write(entry, at: clusterSize)
        try file.flush()
        table[0] = 2 * clusterSize
        allocator.adoptTable(offset: clusterSize, entries: table)
        rebuildOverlapIndex()

        allocator.freeClusterIndex = 0
        let first = try allocator.allocateClusters(3 * clusterSize + UInt64(map.l1.count) * 8)
        guard first == 0 else { throw Qcow2Error.corruptMetadata("First cluster in emptied image is in use") }
        try markClean()
        try file.truncate(to: (3 + l1Clusters) * clusterSize)
    }
}
