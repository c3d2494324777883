// Zero writes (qemu-io write -z [-u]), as QEMU's block layer and qcow2 driver
// make them (bdrv_co_do_pwrite_zeroes, qcow2_co_pwrite_zeroes,
// qcow2_subcluster_zeroize, zero_in_l2_slice, zero_l2_subclusters):
//  - the request is cut at (sub)cluster boundaries: an unaligned head and
//    tail, and the aligned middle in pieces of at most 2 GiB;
//  - a piece becomes zero flags (version 3: the L2 entry's zero bit, or with
//    extended L2 entries the subclusters' zero bits) when it covers whole
//    (sub)clusters, or when the rest of its (sub)cluster already reads as
//    zeroes and is not allocated data;
//  - with "may unmap", allocated clusters are freed (and punched out of the
//    file); otherwise they stay allocated behind the zero flag; compressed
//    clusters are always freed;
//  - version 2 images have no zero flag: without a backing file the clusters
//    are discarded, with one (where stale data would show through) real
//    zeroes are written, as for every piece that cannot use zero flags.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A piece of a zero write that needs real zeroes (QEMU's -ENOTSUP).
struct ZeroFlagsUnsupported: Error {}

extension Qcow2Image {
    /// QEMU's MAX_BOUNCE_BUFFER: zeroes written for real go in chunks of this.
    static let maxZeroBuffer: UInt64 = 32768 * 512

    /// Zeroes guest data (the range checked by the caller).
    func writeGuestZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws {
        let alignment = clusterMap.geometry.subclusterSize
        var head = offset % alignment
        let tail = (offset + length) % alignment
        let maxPiece = UInt64(Int32.max) & ~(alignment - 1)
        var position = offset
        var remaining = length
        while remaining > 0 {
            var piece = remaining
            if head != 0 {
                // Up to the first aligned offset.
                piece = min(min(remaining, Self.maxZeroBuffer), alignment - head)
                head = (head + piece) % alignment
            } else if tail != 0 && piece > alignment {
                // Stop at the last aligned offset.
                piece -= tail
            }
            piece = min(piece, maxPiece)
            do {
                try zeroPiece(at: position, length: piece, mayUnmap: mayUnmap)
            } catch is ZeroFlagsUnsupported {
                piece = min(piece, Self.maxZeroBuffer)
                let zeroes = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(piece), alignment: 16)
                defer { zeroes.deallocate() }
                zeroes.initializeMemory(as: UInt8.self, repeating: 0)
                try writeGuestData(UnsafeRawBufferPointer(zeroes), at: position)
            }
            position += piece
            remaining -= piece
        }
    }

    /// qcow2_co_pwrite_zeroes for one piece (within one subcluster when it
    /// is not aligned).
    private func zeroPiece(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws {
        let subclusterSize = clusterMap.geometry.subclusterSize
        let head = offset & (subclusterSize - 1)
        var tail = ((offset + length + subclusterSize - 1) & ~(subclusterSize - 1)) - (offset + length)
        if try offset + length == writerImageSize() { tail = 0 }
        var start = offset
        var bytes = length
        if head != 0 || tail != 0 {
            // The rest of the subcluster must read as zeroes already.
            guard try chainReadsAsZero(offset - head, head), try chainReadsAsZero(offset + length, tail) else {
                throw ZeroFlagsUnsupported()
            }
            start = offset - head
            bytes = subclusterSize
        }
        try withWriter { writer, _ in
            try writer.guarded {
                if head != 0 || tail != 0 {
                    // A write may have come in since the check.
                    let type = try writer.map.lookup(at: start, length: subclusterSize).type
                    switch type {
                    case .unallocatedPlain, .unallocatedAllocated, .zeroPlain, .zeroAllocated: break
                    default: throw ZeroFlagsUnsupported()
                    }
                }
                try writer.zeroize(offset: start, length: bytes, mayUnmap: mayUnmap)
            }
        }
    }

    /// QEMU's is_zero: the range (clamped to the image) reads as zeroes by
    /// block status, through the backing chain.
    func chainReadsAsZero(_ offset: UInt64, _ length: UInt64) throws -> Bool {
        let imageSize = try writerImageSize()
        guard offset < imageSize else { return true }
        var position = offset
        var remaining = min(length, imageSize - offset)
        while remaining > 0 {
            let status = try chainBlockStatus(at: position, length: remaining).status
            guard status.isZero, status.length > 0 else { return false }
            position += min(status.length, remaining)
            remaining -= min(status.length, remaining)
        }
        return true
    }
}

extension Qcow2Writer {
    /// qcow2_subcluster_zeroize: [offset, offset + length) is subcluster
    /// aligned (or ends at the image's end).
    func zeroize(offset: UInt64, length: UInt64, mayUnmap: Bool) throws {
        if version < 3 {
            // No zero flag: discarding is only safe when nothing shows through.
            guard image.backing == nil else { throw ZeroFlagsUnsupported() }
            try discardClusters(offset: offset, length: length, type: .request, fullDiscard: false)
            return
        }
        var start = offset
        var end = offset + length
        let head = min(end, roundUp(start, clusterSize)) - start
        start += head
        let tail = end >= imageSize ? 0 : end - max(start, startOfCluster(end))
        end -= tail

        allocator.discards.isDeferring = true
        var succeeded = false
        defer {
            allocator.discards.isDeferring = false
            allocator.processDiscards(succeeded: succeeded)
        }
        if head > 0 {
            try zeroSubclusters(at: start - head, count: Int(sizeToSubclusters(head)))
        }
        var clusters = sizeToClusters(end > start ? end - start : 0)
        while clusters > 0 {
            let cleared = try zeroClustersInTable(at: start, count: clusters, mayUnmap: mayUnmap)
            clusters -= cleared
            start += cleared * clusterSize
        }
        if tail > 0 {
            try zeroSubclusters(at: end, count: Int(sizeToSubclusters(tail)))
        }
        succeeded = true
    }

    /// zero_in_l2_slice: sets the zero flag (or all zero bits) of up to
    /// `count` clusters within one L2 table; returns how many it covered.
    private func zeroClustersInTable(at offset: UInt64, count: UInt64, mayUnmap: Bool) throws -> UInt64 {
        let (table, index) = try clusterTable(for: offset)
        let n = min(count, l2Entries - UInt64(index))
        for i in 0..<Int(n) {
            let oldEntry = table.entry(index + i)
            let oldBitmap = table.bitmap(index + i)
            let type = clusterType(oldEntry)
            let isAllocated: Bool
            switch type {
            case .normal, .compressed, .zeroAllocated: isAllocated = true
            case .unallocated, .zeroPlain: isAllocated = false
            }
            var isCompressed = false
            if case .compressed = type { isCompressed = true }
            let unmap = isCompressed || (mayUnmap && isAllocated)
            var newEntry = unmap ? 0 : oldEntry
            var newBitmap = oldBitmap
            if extendedL2 {
                newBitmap = SubclusterRange(first: 0, end: 32).zeroBits
            } else {
                newEntry |= Qcow2EntryMask.zero
            }
            if oldEntry == newEntry && oldBitmap == newBitmap { continue }
            // The entry first, then the refcount.
            table.isDirty = true
            table.setEntry(index + i, newEntry)
            if extendedL2 { table.setBitmap(index + i, newBitmap) }
            if unmap { freeAnyCluster(entry: oldEntry, type: .request) }
        }
        return n
    }

    /// zero_l2_subclusters: sets the zero bits of `count` subclusters (not
    /// a whole cluster) from the one at `offset`.
    private func zeroSubclusters(at offset: UInt64, count: Int) throws {
        let first = subclusterIndex(offset)
        precondition(count > 0 && count < Int(subclustersPerCluster) && first + count <= Int(subclustersPerCluster))
        let (table, index) = try clusterTable(for: offset)
        switch clusterType(table.entry(index)) {
        case .compressed:
            // A compressed cluster cannot be zeroed in part.
            throw ZeroFlagsUnsupported()
        case .normal, .unallocated:
            break
        case .zeroPlain, .zeroAllocated:
            throw Qcow2Error.corruptMetadata("zero flag in an extended L2 entry at guest offset \(hex(offset))")
        }
        let range = SubclusterRange(first: first, end: first + count)
        let old = table.bitmap(index)
        let new = (old | range.zeroBits) & ~range.allocatedBits
        if new != old {
            table.setBitmap(index, new)
            table.isDirty = true
        }
    }
}
