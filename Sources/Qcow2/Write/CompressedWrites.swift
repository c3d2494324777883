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

extension Qcow2Writer {
    func writeCompressed(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkGuestWritesAllowed()
        if buffer.isEmpty {
            // QEMU's way of ending a compressed stream: the file grows to a
            // whole number of sectors.
            try lock.withLock {
                try checkUsableLocked()
                let length = try file.size()
                let rounded = roundUp(length, 512)
                if rounded > length { try file.truncate(to: rounded) }
            }
            return
        }
        guard offsetInCluster(offset) == 0 else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Compressed writes must start at a cluster boundary")
        }
        let end = offset + UInt64(buffer.count)
        guard offsetInCluster(UInt64(buffer.count)) == 0 || end == imageSize else {
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
        let cluster = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(clusterSize), alignment: 16)
        defer { cluster.deallocate() }
        cluster.initializeMemory(as: UInt8.self, repeating: 0)
        cluster.copyMemory(from: data)
        guard let compressed = try codec.compress(UnsafeRawBufferPointer(cluster), limit: Int(clusterSize)) else {
            // Does not compress: a normal write.
            try write(data, at: offset)
            return
        }
        let length = UInt64(compressed.count)
        // Space is allocated and the cluster marked in flight (so that other
        // writes wait for it); the data is written before the L2 entry
        // points to it. QEMU sets the entry first: the file ends the same,
        // but a reader or a crash in between would find garbage.
        let (host, marker): (UInt64, ClusterAllocation) = try lock.withLock {
            try guardedLocked {
                try requireUnallocatedLocked(offset)
                let host = try allocator.allocateBytes(length)
                try checkOverlapLocked(offset: host, length: length)
                let marker = ClusterAllocation(guestOffset: offset, hostOffset: host, clusterCount: 1, keepsOldClusters: true,
                                               cowStart: (0, 0), cowEnd: (clusterSize, 0))
                inFlight.append(marker)
                return (host, marker)
            }
        }
        do {
            try file.write(compressed, at: host)
        } catch {
            lock.withLock {
                freeClustersLocked(offset: host, length: length, type: .never)
                finishLocked(marker)
            }
            throw error
        }
        try lock.withLock {
            defer { finishLocked(marker) }
            do {
                try guardedLocked {
                    // A zero write or discard may have come in meanwhile;
                    // an allocating write waited for the marker.
                    try requireUnallocatedLocked(offset)
                    // The refcounts reach the disk before the entry does.
                    try map.l2Tables.setDependency(on: allocator.blocks)
                    let (table, index) = try clusterTableLocked(for: offset)
                    let descriptor = CompressedClusterDescriptor(hostOffset: host, compressedLength: length)
                    table.isDirty = true
                    table.setEntry(index, descriptor.entry(clusterBits: UInt32(clusterBits)).rawValue)
                    if extendedL2 { table.setBitmap(index, 0) }
                }
            } catch {
                freeClustersLocked(offset: host, length: length, type: .never)
                throw error
            }
        }
    }

    /// Compression never replaces data (QEMU's -EIO): the cluster at
    /// `offset` must have no host cluster.
    private func requireUnallocatedLocked(_ offset: UInt64) throws {
        let (table, index) = try clusterTableLocked(for: offset)
        guard table.entry(index) & Qcow2EntryMask.offset == 0 else {
            throw Qcow2Error.writeFailed(
                errno: EIO, reason: "Cannot compress into guest offset \(hex(offset)): the cluster is allocated")
        }
    }
}
