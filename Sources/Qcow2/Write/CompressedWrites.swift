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
        try checkCompressedRange(offset, buffer.count)
        let compression = try makeClusterCompression()
        let clusterSize = Int(clusterMap.clusterSize)
        var done = 0
        while done < buffer.count {
            let chunk = min(buffer.count - done, clusterSize)
            let cluster = try compression.compress(UnsafeRawBufferPointer(rebasing: buffer[done..<(done + chunk)]))
            try writeCompressedCluster(cluster, at: offset + UInt64(done))
            done += chunk
        }
    }

    /// A compressor for one thread's clusters of this image (see
    /// `writeCompressed(_:at:)`).
    package func makeClusterCompression() throws -> ClusterCompression {
        try ClusterCompression(codec: codec, clusterSize: Int(clusterMap.clusterSize))
    }

    /// A compressed write covers whole clusters from a cluster boundary, or
    /// ends at the image's end.
    func checkCompressedRange(_ offset: UInt64, _ count: Int) throws {
        let clusterSize = clusterMap.clusterSize
        guard offset & (clusterSize - 1) == 0 else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Compressed writes must start at a cluster boundary")
        }
        let end = offset + UInt64(count)
        let imageSize = try writerImageSize()
        guard UInt64(count) & (clusterSize - 1) == 0 || end == imageSize else {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Compressed writes must cover whole clusters or end at the image's end")
        }
    }

    /// qcow2_co_pwritev_compressed_task after the compression: one cluster
    /// (or the image's last, partial one).
    func writeCompressedCluster(_ cluster: CompressedCluster, at offset: UInt64) throws {
        let clusterSize = clusterMap.clusterSize
        guard let compressed = cluster.compressed else {
            // Does not compress: a normal write.
            try writeGuestData(cluster.data, at: offset)
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

/// One cluster of guest data and its compressed bytes (nil when it does not
/// compress), valid until its `ClusterCompression` compresses the next.
package struct CompressedCluster {
    package let data: UnsafeRawBufferPointer
    package let compressed: UnsafeRawBufferPointer?
}

/// What one thread needs to compress clusters of an image: the codec's
/// compressor and a cluster buffer for a short last cluster, which is
/// compressed as if padded with zeroes. Not shared between threads.
package final class ClusterCompression {
    private let compressor: ClusterCompressor
    private let clusterSize: Int
    private var padded = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init(codec: ClusterCodec, clusterSize: Int) throws {
        compressor = try codec.makeCompressor()
        self.clusterSize = clusterSize
    }

    deinit { padded.deallocate() }

    /// Compresses `data`: a whole cluster, or the image's last partial one.
    package func compress(_ data: UnsafeRawBufferPointer) throws -> CompressedCluster {
        var input = data
        if data.count < clusterSize {
            if padded.baseAddress == nil { padded = .allocate(byteCount: clusterSize, alignment: 16) }
            padded.copyMemory(from: data)
            UnsafeMutableRawBufferPointer(rebasing: padded[data.count...]).initializeMemory(as: UInt8.self, repeating: 0)
            input = UnsafeRawBufferPointer(padded)
        }
        return CompressedCluster(data: data, compressed: try compressor.compress(input, limit: clusterSize))
    }
}
