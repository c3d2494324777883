// Compressed writes (qemu-io write -c), as QEMU's
// qcow2_co_pwritev_compressed_part does them: cluster by cluster, each
// compressed with the image's codec (zlib or zstd) into at most a cluster
// minus one byte. Data that does not get smaller is written as a normal
// cluster. Compressed data is placed right after the previous compressed
// data (see ByteAllocation.swift) and the L2 entry is set before the data is
// written, with its refcounts ordered first. Compression never replaces
// data: a cluster that is already allocated is refused (QEMU's -EIO).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    func writeCompressed(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
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
        let host: UInt64 = try lock.withLock {
            try guardedLocked {
                let (table, index) = try clusterTableLocked(for: offset)
                let existing = table.entry(index)
                guard existing & Qcow2EntryMask.offset == 0 else {
                    throw Qcow2Error.writeFailed(
                        errno: EIO, reason: "Cannot compress into guest offset \(hex(offset)): the cluster is allocated")
                }
                let host = try allocator.allocateBytes(UInt64(compressed.count))
                // The refcounts reach the disk before the entry does.
                try map.l2Tables.setDependency(on: allocator.blocks)
                let descriptor = CompressedClusterDescriptor(hostOffset: host, compressedLength: UInt64(compressed.count))
                table.isDirty = true
                table.setEntry(index, descriptor.entry(clusterBits: UInt32(clusterBits)).rawValue)
                if extendedL2 { table.setBitmap(index, 0) }
                try checkOverlapLocked(offset: host, length: UInt64(compressed.count))
                return host
            }
        }
        try file.write(compressed, at: host)
    }
}
