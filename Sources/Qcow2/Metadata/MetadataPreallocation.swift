// Is this image metadata-preallocated, with clusters referenced but never
// written (so they are holes in the host file)? QEMU guesses so when clearly
// more clusters have a refcount than the file has blocks allocated, and then
// asks the host file whether a data cluster is really a hole; `qemu-img map`
// shows such clusters as "zero": true, "data": true. Small images, whose
// header and tables are mostly holes, always pass this test, so map output
// depends on it everywhere.

enum MetadataPreallocation {
    /// QEMU's qcow2_detect_metadata_preallocation: counts clusters with a
    /// non-zero refcount until the count reaches max(real * 10 / 9, real + 2),
    /// where `real` is the number of clusters the host file really allocates.
    static func detect(file: BlockFile, header: Qcow2Header) throws -> Bool {
        let clusterSize = header.clusterSize
        let fileLength = try file.size()
        let realClusters = try file.allocatedSize() / clusterSize
        let threshold = max(realClusters * 10 / 9, realClusters + 2)
        let endCluster = divideRoundingUp(fileLength, clusterSize)

        // The refcount table: validated with the header (at most 8 MiB).
        let tableEntries = Int(UInt64(header.refcountTableClusters) * clusterSize / 8)
        var table = [UInt64](repeating: 0, count: tableEntries)
        _ = try table.withUnsafeMutableBytes { try file.read(into: $0, at: header.refcountTableOffset) }

        let entriesPerBlock = header.refcountEntriesPerBlock
        let refcountBits = Int(header.refcountBits)
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(clusterSize), alignment: 8)
        defer { block.deallocate() }

        var counted: UInt64 = 0
        var cluster: UInt64 = 0
        while cluster < endCluster && counted < threshold {
            let tableIndex = cluster / entriesPerBlock
            let blockEnd = min(endCluster, (tableIndex + 1) * entriesPerBlock)
            guard tableIndex < UInt64(tableEntries) else { break }   // the rest has refcount 0
            let blockOffset = UInt64(bigEndian: table[Int(tableIndex)]) & Qcow2EntryMask.refcountTableOffset
            if blockOffset == 0 { cluster = blockEnd; continue }
            guard blockOffset & (clusterSize - 1) == 0 else {
                throw Qcow2Error.corruptMetadata("Refblock offset \(hex(blockOffset)) unaligned (reftable index: \(hex(tableIndex)))")
            }
            try file.read(into: block, at: blockOffset)
            var index = Int(cluster - tableIndex * entriesPerBlock)
            while cluster < blockEnd && counted < threshold {
                if refcountIsNonZero(block, index: index, bits: refcountBits) { counted += 1 }
                index += 1
                cluster += 1
            }
        }
        return counted >= threshold
    }

    /// Whether refcount entry `index` of a refcount block is non-zero. Entries
    /// narrower than a byte fill each byte from its least significant bit.
    @inline(__always)
    static func refcountIsNonZero(_ block: UnsafeMutableRawBufferPointer, index: Int, bits: Int) -> Bool {
        if bits < 8 {
            let perByte = 8 / bits
            let byte = block[index / perByte]
            let mask = UInt8(truncatingIfNeeded: (1 << bits) - 1)
            return (byte >> UInt8(bits * (index % perByte))) & mask != 0
        }
        let bytes = bits / 8
        let start = index * bytes
        for i in start..<(start + bytes) where block[i] != 0 { return true }
        return false
    }
}
