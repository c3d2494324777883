// Compressed writes (qemu-io write -c), as QEMU's
// qcow2_co_pwritev_compressed_part does them: cluster by cluster, each
// compressed with the image's codec (zlib or zstd) into at most a cluster
// minus one byte. Data that does not get smaller is written as a normal
// cluster. Compressed data is placed right after the previous compressed
// data (see ByteAllocation.swift); the L2 entry follows the data, with its
// refcounts ordered first. Compression never replaces data: a cluster that
// is already allocated is refused (QEMU's -EIO).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image {
    /// Writes guest data compressed (the range checked by the caller).
    func writeGuestCompressed(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        if buffer.isEmpty {
            // QEMU's way of ending a compressed stream: the file grows to a
            // whole number of sectors.
            try withWriter { writer, _ in
                try writer.checkUsable()
                let length = try file.size()
                let rounded = writer.roundUp(length, 512)
                if rounded > length { try file.truncate(to: rounded) }
            }
            return
        }
        let clusterSize = clusterMap.clusterSize
        guard offset & (clusterSize - 1) == 0 else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Compressed writes must start at a cluster boundary")
        }
        let end = offset + UInt64(buffer.count)
        let imageSize = try writerImageSize()
        guard UInt64(buffer.count) & (clusterSize - 1) == 0 || end == imageSize else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Compressed writes must cover whole clusters or end at the image's end")
        }
        var done = 0
        while done < buffer.count {
            let chunk = min(buffer.count - done, Int(clusterSize))
            try writeCompressedCluster(UnsafeRawBufferPointer(rebasing: buffer[done..<(done + chunk)]), at: offset + UInt64(done))
            done += chunk
        }
    }

    /// qcow2_co_pwritev_compressed_task: one cluster (or the image's last,
    /// partial one, compressed as if padded with zeroes).
    private func writeCompressedCluster(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws {
        let clusterSize = clusterMap.clusterSize
        let cluster = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(clusterSize), alignment: 16)
        defer { cluster.deallocate() }
        cluster.initializeMemory(as: UInt8.self, repeating: 0)
        cluster.copyMemory(from: data)
        guard let compressed = try codec.compress(UnsafeRawBufferPointer(cluster), limit: Int(clusterSize)) else {
            // Does not compress: a normal write.
            try writeGuestData(data, at: offset)
            return
        }
        let length = UInt64(compressed.count)
        // Space is allocated and the cluster marked in flight (so that other
        // writes wait for it); the data is written before the L2 entry
        // points to it. QEMU sets the entry first: the file ends the same,
        // but a reader or a crash in between would find garbage.
        let (host, marker): (UInt64, ClusterAllocation) = try withWriter { writer, _ in
            try writer.guarded {
                try writer.requireUnallocated(offset)
                let host = try writer.allocator.allocateBytes(length)
                try writer.checkOverlap(offset: host, length: length)
                let marker = ClusterAllocation(guestOffset: offset, hostOffset: host, clusterCount: 1, keepsOldClusters: true,
                                               cowStart: (0, 0), cowEnd: (clusterSize, 0))
                writer.inFlight.append(marker)
                return (host, marker)
            }
        }
        do {
            try file.write(compressed, at: host)
        } catch {
            _ = try? withWriter { writer, lock in
                writer.freeClusters(offset: host, length: length, type: .never)
                writer.finish(marker, lock: lock)
            }
            throw error
        }
        try withWriter { writer, lock in
            defer { writer.finish(marker, lock: lock) }
            do {
                try writer.guarded {
                    // A zero write or discard may have come in meanwhile;
                    // an allocating write waited for the marker.
                    try writer.requireUnallocated(offset)
                    // The refcounts reach the disk before the entry does.
                    try writer.map.l2Tables.setDependency(on: writer.allocator.blocks)
                    let (table, index) = try writer.clusterTable(for: offset)
                    let descriptor = CompressedClusterDescriptor(hostOffset: host, compressedLength: length)
                    table.isDirty = true
                    table.setEntry(index, descriptor.entry(clusterBits: UInt32(writer.clusterBits)).rawValue)
                    if writer.extendedL2 { table.setBitmap(index, 0) }
                }
            } catch {
                writer.freeClusters(offset: host, length: length, type: .never)
                throw error
            }
        }
    }
}

extension Qcow2Writer {
    /// Compression never replaces data (QEMU's -EIO): the cluster at
    /// `offset` must have no host cluster.
    func requireUnallocated(_ offset: UInt64) throws {
        let (table, index) = try clusterTable(for: offset)
        guard table.entry(index) & Qcow2EntryMask.offset == 0 else {
            throw Qcow2Error.writeFailed(
                errno: EIO, reason: "Cannot compress into guest offset \(hex(offset)): the cluster is allocated")
        }
    }
}
