// Reading guest data from a qcow2 image: each request is cut into runs that
// the cluster map describes alike, and each run is served by one host read
// (contiguous clusters), a zero fill, the backing image, or decompression of
// one compressed cluster.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image: BlockImage {
    /// Always `.qcow2`.
    public var format: ImageFormat { .qcow2 }
    /// The path the image was opened with.
    public var filename: String { file.path }
    /// QEMU counts a qcow2 image's size in whole sectors, dropping any tail.
    public var size: UInt64 { header.size & ~511 }

    /// Fills `buffer` with the guest data at `offset`, through the backing
    /// chain where this image has nothing. Throws `Qcow2Error` (I/O,
    /// corrupt metadata, a range past `size`).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, buffer.count)
        try readGuest(into: buffer, at: offset)
    }

    /// Reads guest data without the range check: copy-on-write reads whole
    /// clusters, which may run past the image's end (reading zeroes there).
    func readGuest(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var scratch = DecompressionScratch()
        defer { scratch.release() }
        var done = 0
        while done < buffer.count {
            let position = offset + UInt64(done)
            let extent = try clusterMap.lookup(at: position, length: UInt64(buffer.count - done))
            let count = Int(extent.length)
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + count)])
            switch extent.type {
            case .normal:
                // Past the end of the file reads as zeroes, as in QEMU.
                try file.read(into: part, at: extent.hostOffset ?? 0)
            case .zeroPlain, .zeroAllocated:
                fillWithZeroes(part)
            case .unallocatedPlain, .unallocatedAllocated:
                try readFromBacking(into: part, at: position)
            case .compressed:
                guard let descriptor = extent.compressed else { throw Qcow2Error.corruptMetadata("compressed entry without descriptor") }
                try readCompressed(descriptor, from: Int(position & (clusterMap.clusterSize - 1)), into: part, scratch: &scratch)
            case .invalid:
                throw Qcow2Error.corruptMetadata("invalid cluster entry at guest offset \(position)")
            }
            done += count
        }
    }

    /// Unallocated here: the backing's data where it has some, zeroes past its
    /// end or without a backing.
    private func readFromBacking(into part: UnsafeMutableRawBufferPointer, at position: UInt64) throws {
        guard let backing, position < backing.size else {
            fillWithZeroes(part)
            return
        }
        let available = Int(min(UInt64(part.count), backing.size - position))
        try backing.read(into: UnsafeMutableRawBufferPointer(rebasing: part[..<available]), at: position)
        if available < part.count {
            fillWithZeroes(UnsafeMutableRawBufferPointer(rebasing: part[available...]))
        }
    }

    /// Reads one compressed cluster and copies out the bytes from
    /// `offsetInCluster` on. A whole-cluster read decompresses in place.
    private func readCompressed(
        _ descriptor: CompressedClusterDescriptor, from offsetInCluster: Int,
        into part: UnsafeMutableRawBufferPointer, scratch: inout DecompressionScratch
    ) throws {
        let clusterSize = Int(clusterMap.clusterSize)
        // Valid compressed data never exceeds a cluster plus the partial
        // sector it starts in; a larger sector count is not read.
        let inputLength = Int(min(descriptor.byteLength, clusterMap.clusterSize + 512))
        let input = scratch.input(clusterSize: clusterSize)
        let compressed = UnsafeMutableRawBufferPointer(rebasing: input[..<inputLength])
        try file.read(into: compressed, at: descriptor.hostOffset)
        if offsetInCluster == 0 && part.count == clusterSize {
            try codec.decompress(UnsafeRawBufferPointer(compressed), into: part)
        } else {
            let cluster = scratch.output(clusterSize: clusterSize)
            try codec.decompress(UnsafeRawBufferPointer(compressed), into: cluster)
            part.copyMemory(from: UnsafeRawBufferPointer(rebasing: cluster[offsetInCluster..<(offsetInCluster + part.count)]))
        }
    }
}

/// Buffers for compressed clusters, allocated on first use and kept for the
/// rest of one read request.
struct DecompressionScratch {
    private var inputBuffer: UnsafeMutableRawBufferPointer?
    private var outputBuffer: UnsafeMutableRawBufferPointer?

    mutating func input(clusterSize: Int) -> UnsafeMutableRawBufferPointer {
        if let inputBuffer { return inputBuffer }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: clusterSize + 512, alignment: 16)
        inputBuffer = buffer
        return buffer
    }

    mutating func output(clusterSize: Int) -> UnsafeMutableRawBufferPointer {
        if let outputBuffer { return outputBuffer }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: clusterSize, alignment: 16)
        outputBuffer = buffer
        return buffer
    }

    mutating func release() {
        inputBuffer?.deallocate()
        outputBuffer?.deallocate()
        inputBuffer = nil
        outputBuffer = nil
    }
}

@inline(__always)
func fillWithZeroes(_ buffer: UnsafeMutableRawBufferPointer) {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return }
    memset(base, 0, buffer.count)
}
