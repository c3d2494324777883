// The copy of a safe rebase (QEMU 7.2's img_rebase): before an image is
// pointed at another backing file, every range it leaves to its backing and
// where the old and the new backing read differently gets the old content
// written into the image, so that the guest sees no change. As qemu-img:
//  - the image is walked in steps of at most 2 MiB (IO_BUF_SIZE); a range
//    the image allocates itself is skipped (block status of the image alone);
//  - when the new backing is in the old chain (the "prefix"), ranges that no
//    image between the old backing and the prefix allocates are skipped too;
//  - past a backing file's end it reads as zeroes (no new backing: zeroes);
//  - the two are compared sector by sector; each differing run is written
//    as one guest write, or as a zero write (without unmapping) where the
//    old backing had ended;
//  - beyond 7.2, as QEMU 8.2 does: a data write covers whole (sub)clusters
//    of the image, filled with what the old backing reads there, so the
//    write path never copies the rest of a cluster on write (7.2's copy on
//    write reads the same old content there: the file ends the same).
// With -c (beyond 7.2, as QEMU 8.2 offers it) each differing run is widened
// to whole clusters, which are written compressed with what the image reads
// there now.
// A crash at any point changes nothing the guest sees: the old backing
// still backs the image, and what was written equals what it reads; the
// copy is flushed before the caller rewrites the header.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

package enum RebaseCopy {
    /// qemu-img's IO_BUF_SIZE.
    static let bufferSize: UInt64 = 2 << 20
    static let sectorSize = 512

    /// Copies into `image` what changes when its backing `oldBacking`
    /// becomes `newBacking`. `prefix`: the new backing when it is an image
    /// of the old chain. `progress` gets qemu-img's increments (percent).
    /// `flushEachWrite` (-t writethrough, directsync: the overlay's
    /// BlockBackend without a write cache) flushes the image after every
    /// write, as QEMU completes each such write with a flush.
    /// Throws `Qcow2Error.writeFailed` with qemu-img's messages.
    package static func run(image: WritableBlockImage, oldBacking: BlockImage?, newBacking: BlockImage?,
                            prefix: BlockImage?, compress: Bool = false, flushEachWrite: Bool = false,
                            progress: (Double) -> Void) throws {
        // -c (QEMU 8.2's): data is written as whole compressed clusters;
        // with extended L2 entries a cluster may be allocated in part, and
        // is written as qemu-img 7.2 writes it.
        let header = (image as? Qcow2Image)?.header
        let compressedCluster = compress && header?.hasExtendedL2 == false ? header?.clusterSize : nil
        let size = image.size
        let oldSize = oldBacking?.size ?? 0
        let newSize = newBacking?.size ?? 0
        let step = size == 0 ? 0 : 100 / Double(size / min(size, bufferSize))
        // 8.2's write_align: the (sub)cluster, the unit of allocation.
        let align = header?.subclusterSize ?? UInt64(sectorSize)
        var aligned = [UInt8]()
        let oldBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(bufferSize), alignment: 4096)
        let newBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(bufferSize), alignment: 4096)
        defer {
            oldBuffer.deallocate()
            newBuffer.deallocate()
        }
        var offset: UInt64 = 0
        while offset < size {
            var n = min(bufferSize, size - offset)
            let status = try metadata { try image.blockStatus(at: offset, length: n) }
            n = status.length
            if status.isAllocated {
                offset += n
                continue
            }
            if let prefix, let oldBacking {
                let (allocated, run) = try metadata {
                    try allocatedAbove(oldBacking, down: prefix, at: offset, length: n)
                }
                n = run
                if !allocated {
                    offset += n
                    continue
                }
            }

            // Past a backing file's end (or without one) it reads as zeroes.
            func fill(_ buffer: UnsafeMutableRawBufferPointer, from backing: BlockImage?, size: UInt64,
                      _ which: String) throws -> Bool {
                guard let backing, offset < size else {
                    buffer.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: Int(n))
                    return true
                }
                n = min(n, size - offset)
                do {
                    try backing.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(n)]), at: offset)
                } catch {
                    throw Qcow2Error.writeFailed(errno: Qcow2Error.errnoValue(of: error),
                                                 reason: "error while reading from \(which) backing file")
                }
                return false
            }
            let oldIsZero = try fill(oldBuffer, from: oldBacking, size: oldSize, "old")
            _ = try fill(newBuffer, from: newBacking, size: newSize, "new")

            var written = 0
            while written < Int(n) {
                let (differs, run) = compare(oldBuffer, newBuffer, from: written, to: Int(n))
                if differs {
                    do {
                        if oldIsZero {
                            try image.writeZeroes(at: offset + UInt64(written), length: UInt64(run), mayUnmap: false)
                        } else if let compressedCluster {
                            try writeCompressed(image, at: offset + UInt64(written), length: UInt64(run),
                                                clusterSize: compressedCluster)
                        } else {
                            let end = try writeAligned(image, UnsafeMutableRawBufferPointer(rebasing: oldBuffer[0..<Int(n)]),
                                                       chunk: offset, from: written, count: run,
                                                       align: align, oldBacking: oldBacking, scratch: &aligned)
                            if flushEachWrite { try image.flush() }
                            // A write past the chunk's end: the next chunk
                            // finds that cluster allocated.
                            written = min(Int(end - offset), Int(n))
                            continue
                        }
                        if flushEachWrite { try image.flush() }
                    } catch {
                        throw Qcow2Error.writeFailed(errno: Qcow2Error.errnoValue(of: error),
                                                     reason: "Error while writing to COW image: \(Qcow2Error.reason(of: error))")
                    }
                }
                written += run
            }
            progress(step)
            offset += n
        }
        // Compressed data may end inside a sector: the file is rounded up,
        // as qemu-img ends its compressed output.
        if compressedCluster != nil { try image.writeCompressed(UnsafeRawBufferPointer(start: nil, count: 0), at: 0) }
        // What was copied is on disk before the header names the new backing:
        // L2 entries still in the cache when a crash follows the header
        // change would leave those ranges to the new backing (qemu-img 7.2
        // has this window; the file ends the same either way).
        do {
            try image.flush()
        } catch {
            throw Qcow2Error.writeFailed(errno: Qcow2Error.errnoValue(of: error),
                                         reason: "Error while writing to COW image: \(Qcow2Error.reason(of: error))")
        }
    }

    /// Writes old content over [chunk + from, chunk + from + count) and
    /// the rest of the (sub)clusters it touches (all unallocated in the
    /// image: it allocates whole ones), from `buffer` (the old backing's
    /// content from `chunk`, all of the chunk) or, outside it, from `oldBacking` (zeroes past
    /// its end); returns where the write ended.
    static func writeAligned(_ image: WritableBlockImage, _ buffer: UnsafeMutableRawBufferPointer, chunk: UInt64,
                             from: Int, count: Int, align: UInt64, oldBacking: BlockImage?,
                             scratch: inout [UInt8]) throws -> UInt64 {
        let start = (chunk + UInt64(from)) / align * align
        let end = min((chunk + UInt64(from + count) + align - 1) / align * align, image.size)
        if start >= chunk && end <= chunk + UInt64(buffer.count) {
            try image.write(UnsafeRawBufferPointer(rebasing: buffer[Int(start - chunk)..<Int(end - chunk)]), at: start)
            return end
        }
        scratch = [UInt8](repeating: 0, count: Int(end - start))
        try scratch.withUnsafeMutableBytes { bytes in
            if let oldBacking, start < oldBacking.size {
                let readable = Int(min(end, oldBacking.size) - start)
                try oldBacking.read(into: UnsafeMutableRawBufferPointer(rebasing: bytes[0..<readable]), at: start)
            }
            // What the chunk holds is already read.
            let first = max(start, chunk), last = min(end, chunk + UInt64(buffer.count))
            if first < last {
                UnsafeMutableRawBufferPointer(rebasing: bytes[Int(first - start)..<Int(last - start)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[Int(first - chunk)..<Int(last - chunk)]))
            }
            try image.write(UnsafeRawBufferPointer(bytes), at: start)
        }
        return end
    }

    /// The clusters around [offset, offset + length), read as the image
    /// reads them now (from the old backing: the image leaves them to it),
    /// written back compressed; clusters already written are skipped.
    static func writeCompressed(_ image: WritableBlockImage, at offset: UInt64, length: UInt64,
                                clusterSize: UInt64) throws {
        var cluster = offset / clusterSize * clusterSize
        let end = offset + length
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(clusterSize), alignment: 4096)
        defer { buffer.deallocate() }
        while cluster < end {
            let count = min(clusterSize, image.size - cluster)
            if try !image.blockStatus(at: cluster, length: count).isAllocated {
                let data = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(count)])
                try image.read(into: data, at: cluster)
                try image.writeCompressed(UnsafeRawBufferPointer(data), at: cluster)
            }
            cluster += clusterSize
        }
    }

    /// compare_buffers: whether the first sector from `start` differs, and
    /// how many bytes (whole sectors, or the rest) share that answer.
    static func compare(_ a: UnsafeMutableRawBufferPointer, _ b: UnsafeMutableRawBufferPointer,
                        from start: Int, to end: Int) -> (differs: Bool, length: Int) {
        func differs(_ at: Int) -> Bool {
            let len = min(end - at, sectorSize)
            return memcmp(a.baseAddress! + at, b.baseAddress! + at, len) != 0
        }
        let first = differs(start)
        var i = start + min(end - start, sectorSize)
        while i < end && differs(i) == first { i += min(end - i, sectorSize) }
        return (first, i - start)
    }

    /// bdrv_is_allocated_above(top, base) without base: whether an image
    /// from `top` down to (not including) `base` allocates the run at
    /// `offset`, and how far that answer holds (at most `length`). A layer
    /// that ends before `offset`, `top` included, counts as allocating
    /// zeroes there: past the old backing's end the image read zeroes, which
    /// the new backing from the old chain may not (QEMU 8.2's rebase zeroes
    /// such ranges explicitly; bdrv_is_allocated_above answers nothing there).
    static func allocatedAbove(_ top: BlockImage, down base: BlockImage, at offset: UInt64,
                               length: UInt64) throws -> (Bool, UInt64) {
        guard offset < top.size else { return (true, length) }
        var run = length
        var layer: BlockImage? = top
        while let current = layer, current !== base {
            guard offset < current.size else { return (true, run) }
            let status = try current.blockStatus(at: offset, length: run)
            if status.isAllocated { return (true, min(run, status.length)) }
            run = min(run, status.length)
            layer = current.backing
        }
        return (false, run)
    }

    private static func metadata<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw Qcow2Error.writeFailed(errno: Qcow2Error.errnoValue(of: error),
                                         reason: "error while reading image metadata: \(Qcow2Error.reason(of: error))")
        }
    }
}
