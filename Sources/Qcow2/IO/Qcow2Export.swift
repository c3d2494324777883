// Writing a whole guest disk (through its backing chain) into a new qcow2
// image, as `qemu-img convert -O qcow2` does: the image is created with the
// given options, then only data that is allocated and not zero is written,
// in guest order, so the write path allocates clusters where QEMU would.
// Ranges the chain reports as zero, and whole zero blocks inside read data,
// are skipped: a new image without a backing file reads as zeroes already.

public enum Qcow2Export {
    /// Bytes read and written per request (qemu-img convert's buffer size).
    public static let chunkSize = 2 << 20

    /// Creates `path` with `options` (its size is replaced by the image's)
    /// and copies `image`'s guest data into it; with `compress`, every
    /// cluster that holds data is written compressed.
    public static func write(_ image: BlockImage, to path: String, options: Qcow2CreateOptions, compress: Bool = false) throws {
        try RawExport.refuseOutputInChain(image, path: path)
        var options = options
        options.size = image.size
        try Qcow2Creator.create(path: path, options: options)
        let opened = try ImageOpener.open(path: path, format: .qcow2, writable: true)
        guard let output = opened as? WritableBlockImage else {
            try? opened.close()
            throw Qcow2Error.invalidArgument("qcow2 images cannot be written by this build")
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

    /// Copies guest data chunk by chunk; compressed output goes cluster by
    /// cluster (`blockSize` is then the cluster size).
    static func copy(_ image: BlockImage, into output: WritableBlockImage, blockSize: Int, compress: Bool) throws {
        let size = image.size
        let chunk = max(chunkSize - chunkSize % blockSize, blockSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: UInt64 = 0
        while offset < size {
            let end = min(size, offset + UInt64(chunk))
            let status: ChainBlockStatus
            do { status = try image.chainBlockStatus(at: offset, length: end - offset) } catch {
                throw RawExport.Failure.read(offset: offset, error: error)
            }
            var runEnd = offset + status.status.length
            if compress {
                // Compressed output goes in whole clusters: `offset` stays
                // cluster aligned, and a cluster with any data is read whole.
                let cluster = UInt64(blockSize)
                if status.status.isZero {
                    let alignedEnd = runEnd & ~(cluster - 1)
                    if alignedEnd > offset {
                        offset = alignedEnd
                        continue
                    }
                }
                runEnd = min(size, alignUp(runEnd, cluster) ?? size, offset + UInt64(chunk))
            } else if status.status.isZero {
                offset = runEnd
                continue
            }
            let data = UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(runEnd - offset)])
            do { try image.read(into: data, at: offset) } catch {
                throw RawExport.Failure.read(offset: offset, error: error)
            }
            try forEachNonZeroRun(UnsafeRawBufferPointer(data), at: offset, blockSize: blockSize) { run, position in
                do {
                    if compress {
                        try writeCompressed(run, at: position, clusterSize: blockSize, into: output)
                    } else {
                        try output.write(run, at: position)
                    }
                } catch {
                    throw RawExport.Failure.write(offset: position, error: error)
                }
            }
            offset = runEnd
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
