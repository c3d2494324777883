// Writing a whole guest disk (through its backing chain) into a new qcow2
// image, as `qemu-img convert -O qcow2` does: the image is created with the
// given options, then only data that is allocated and not zero is written,
// in guest order, so the write path allocates clusters where QEMU would.
// Ranges the chain reports as zero, and whole zero blocks inside read data,
// are skipped: a new image without a backing file reads as zeroes already.

/// Writes a guest disk into a new qcow2 image (`qemu-img convert -O qcow2`).
public enum Qcow2Export {
    /// Bytes read and written per request (qemu-img convert's buffer size).
    package static let chunkSize = 2 << 20

    /// Creates `path` with `options` (its size is replaced by the image's)
    /// and copies `image`'s guest data into it; with `compress`, every
    /// cluster that holds data is written compressed.
    ///
    /// The output is written as qemu-img writes its target (cache=unsafe):
    /// the write path keeps QEMU's order of writes, but its flushes do not
    /// sync the file. A convert that does not complete leaves no usable image
    /// either way, and syncing the new image's metadata steps one by one only
    /// made the copy wait for the disk.
    /// Throws `Qcow2Error.creation` when the output cannot be created,
    /// `Qcow2Error.export` when reading or writing fails.
    public static func write(_ image: BlockImage, to path: String, options: Qcow2CreateOptions, compress: Bool = false) throws {
        try write(image, to: path, options: options, refcountBits: nil, compress: compress)
    }

    /// `write`, with a refcount width asked for as bits (see
    /// `Qcow2CreateOptions.validate(refcountBits:)`).
    package static func write(_ image: BlockImage, to path: String, options: Qcow2CreateOptions,
                              refcountBits: UInt64?, compress: Bool) throws {
        try RawExport.refuseOutputInChain(image, path: path)
        var options = options
        options.size = image.size
        try Qcow2Creator.create(path: path, options: options, refcountBits: refcountBits, replacing: true)
        let file: BlockFile
        do {
            file = try BlockFile(path: path, writable: true)
            // Locked as qemu-img convert's target.
            try file.setAccess(BlockAccess.backend(writable: true).forFile(of: .qcow2, writable: true))
        } catch let Qcow2Error.io(_, code) {
            throw Qcow2Error.openFailed(path: path, errno: code)
        }
        file.ignoresFlushes = true
        let output: Qcow2Image
        do { output = try Qcow2Image(file: file) } catch {
            try? file.close()
            throw error
        }
        do {
            try copy(image, into: output, blockSize: compress ? Int(options.clusterSize) : RawExport.sparseBlock, compress: compress)
            // qemu-img ends a compressed stream with an empty compressed
            // write, which pads the file to a whole sector.
            if compress { try output.writeCompressed(UnsafeRawBufferPointer(start: nil, count: 0), at: 0) }
            try output.flush()
        } catch {
            try? output.close()
            throw error
        }
        try output.close()
    }

    /// Copies guest data chunk by chunk, reading ahead on a second thread
    /// while the data read before is written (in guest order); compressed
    /// output goes cluster by cluster (`blockSize` is then the cluster size).
    static func copy(_ image: BlockImage, into output: WritableBlockImage, blockSize: Int, compress: Bool) throws {
        let chunk = max(chunkSize - chunkSize % blockSize, blockSize)
        var reader = ChunkReader(image: image, chunk: chunk, blockSize: blockSize, compress: compress)
        try ReadAhead.run(depth: 4, bufferSize: chunk, produce: { try reader.next(into: $0) }) { read, buffer in
            for run in read.runs {
                let data = UnsafeRawBufferPointer(rebasing: buffer[run.range])
                do {
                    if compress {
                        try writeCompressed(data, at: run.position, clusterSize: blockSize, into: output)
                    } else {
                        try output.write(data, at: run.position)
                    }
                } catch {
                    throw RawExport.Failure.write(offset: run.position, error: error)
                }
            }
        }
    }

    /// One chunk of guest data read: the runs of it to write (the rest is
    /// whole zero blocks), as ranges of the buffer and their guest offsets.
    struct ReadChunk {
        var runs: [(range: Range<Int>, position: UInt64)] = []
    }

    /// Walks the guest disk in order, skipping ranges the chain reports as
    /// zero and reading the rest a chunk at a time. One block-status query
    /// covers a whole run (not one chunk), as qemu-img asks.
    struct ChunkReader {
        let image: BlockImage
        let chunk: Int
        let blockSize: Int
        let compress: Bool
        var offset: UInt64 = 0
        /// The status run `offset` lies in, once asked for.
        var run: (end: UInt64, isZero: Bool)?

        init(image: BlockImage, chunk: Int, blockSize: Int, compress: Bool) {
            self.image = image
            self.chunk = chunk
            self.blockSize = blockSize
            self.compress = compress
        }

        /// Reads the next chunk holding data into `buffer`; nil at the end.
        mutating func next(into buffer: UnsafeMutableRawBufferPointer) throws -> ReadChunk? {
            let size = image.size
            while offset < size {
                if run == nil || run!.end <= offset {
                    let status: ChainBlockStatus
                    do { status = try image.chainBlockStatus(at: offset, length: size - offset) } catch {
                        throw RawExport.Failure.read(offset: offset, error: error)
                    }
                    guard status.status.length > 0 else {
                        throw RawExport.Failure.read(offset: offset, error: Qcow2Error.corruptMetadata("no progress in block status at \(offset)"))
                    }
                    run = (offset + status.status.length, status.status.isZero)
                }
                let (statusEnd, isZero) = run!
                var runEnd = min(statusEnd, offset + UInt64(chunk))
                if compress {
                    // Compressed output goes in whole clusters: `offset` stays
                    // cluster aligned, and a cluster with any data is read whole.
                    let cluster = UInt64(blockSize)
                    if isZero {
                        let alignedEnd = statusEnd & ~(cluster - 1)
                        if alignedEnd > offset {
                            offset = alignedEnd
                            continue
                        }
                    }
                    runEnd = min(size, alignUp(statusEnd, cluster) ?? size, offset + UInt64(chunk))
                } else if isZero {
                    offset = statusEnd
                    continue
                }
                let data = UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(runEnd - offset)])
                do { try image.read(into: data, at: offset) } catch {
                    throw RawExport.Failure.read(offset: offset, error: error)
                }
                var read = ReadChunk()
                let start = offset
                forEachNonZeroRun(UnsafeRawBufferPointer(data), at: start, blockSize: blockSize) { part, position in
                    let from = Int(position - start)
                    read.runs.append((from..<(from + part.count), position))
                }
                offset = runEnd
                return read
            }
            return nil
        }
    }

    private static func writeCompressed(_ run: UnsafeRawBufferPointer, at position: UInt64, clusterSize: Int, into output: WritableBlockImage) throws {
        var index = 0
        while index < run.count {
            let length = min(clusterSize - Int(position + UInt64(index)) % clusterSize, run.count - index)
            try output.writeCompressed(UnsafeRawBufferPointer(rebasing: run[index..<(index + length)]), at: position + UInt64(index))
            index += length
        }
    }
}
