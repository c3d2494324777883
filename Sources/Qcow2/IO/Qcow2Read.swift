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
                try readCompressed(descriptor, from: Int(position & (clusterMap.clusterSize - 1)), into: part)
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
        into part: UnsafeMutableRawBufferPointer
    ) throws {
        let workspace = DecompressionWorkspace.current
        let clusterSize = Int(clusterMap.clusterSize)
        // Valid compressed data never exceeds a cluster plus the partial
        // sector it starts in; a larger sector count is not read.
        let inputLength = Int(min(descriptor.byteLength, clusterMap.clusterSize + 512))
        let input = workspace.input(clusterSize: clusterSize)
        let compressed = UnsafeMutableRawBufferPointer(rebasing: input[..<inputLength])
        try file.read(into: compressed, at: descriptor.hostOffset)
        if offsetInCluster == 0 && part.count == clusterSize {
            try workspace.decompressor(codec).decompress(UnsafeRawBufferPointer(compressed), into: part)
        } else {
            let cluster = workspace.output(clusterSize: clusterSize)
            try workspace.decompressor(codec).decompress(UnsafeRawBufferPointer(compressed), into: cluster)
            part.copyMemory(from: UnsafeRawBufferPointer(rebasing: cluster[offsetInCluster..<(offsetInCluster + part.count)]))
        }
    }
}

/// One thread's buffers and decompressors for compressed clusters, made on
/// the thread's first compressed read and kept for its life (a pthread key
/// owns them), so that later reads of compressed clusters allocate nothing.
/// They grow to the largest cluster size the thread has read.
final class DecompressionWorkspace {
    private var inputBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var outputBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var zlib: ClusterDecompressor?
    private var zstd: ClusterDecompressor?

    /// The calling thread's workspace.
    static var current: DecompressionWorkspace {
        if let pointer = pthread_getspecific(decompressionWorkspaceKey) {
            return Unmanaged<DecompressionWorkspace>.fromOpaque(pointer).takeUnretainedValue()
        }
        let workspace = DecompressionWorkspace()
        pthread_setspecific(decompressionWorkspaceKey, Unmanaged.passRetained(workspace).toOpaque())
        return workspace
    }

    deinit {
        inputBuffer.deallocate()
        outputBuffer.deallocate()
    }

    /// Room for a cluster's compressed bytes (at most a cluster and the
    /// partial sector it starts in).
    func input(clusterSize: Int) -> UnsafeMutableRawBufferPointer {
        Self.reserve(&inputBuffer, clusterSize + 512)
    }

    /// Room for one decompressed cluster.
    func output(clusterSize: Int) -> UnsafeMutableRawBufferPointer {
        Self.reserve(&outputBuffer, clusterSize)
    }

    /// The thread's decompressor for `codec`'s compression type.
    func decompressor(_ codec: ClusterCodec) throws -> ClusterDecompressor {
        switch codec.compressionType {
        case .zlib:
            if let zlib { return zlib }
            let made = try codec.makeDecompressor()
            zlib = made
            return made
        case .zstd:
            if let zstd { return zstd }
            let made = try codec.makeDecompressor()
            zstd = made
            return made
        }
    }

    private static func reserve(_ buffer: inout UnsafeMutableRawBufferPointer, _ count: Int) -> UnsafeMutableRawBufferPointer {
        if buffer.count < count {
            buffer.deallocate()
            buffer = .allocate(byteCount: count, alignment: 16)
        }
        return UnsafeMutableRawBufferPointer(rebasing: buffer[..<count])
    }
}

/// The key of each thread's `DecompressionWorkspace`, released when the thread ends.
private let decompressionWorkspaceKey: pthread_key_t = {
    var key = pthread_key_t()
    let created = pthread_key_create(&key) { pointer in
        guard let pointer else { return }
        Unmanaged<DecompressionWorkspace>.fromOpaque(pointer).release()
    }
    precondition(created == 0, "pthread_key_create failed")
    return key
}()

@inline(__always)
func fillWithZeroes(_ buffer: UnsafeMutableRawBufferPointer) {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return }
    memset(base, 0, buffer.count)
}
