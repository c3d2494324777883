// Compressed clusters: one codec per compression type, chosen by the header.

/// Compresses one cluster and decompresses one cluster's worth of data.
package protocol ClusterCodec: Sendable {
    /// The header's compression type this codec reads and writes.
    var compressionType: CompressionType { get }
    /// A compressor for one thread to use cluster after cluster.
    func makeCompressor() throws -> ClusterCompressor
    /// A decompressor for one thread to use cluster after cluster.
    func makeDecompressor() throws -> ClusterDecompressor
}

/// A codec's decompression state, kept by one thread across clusters.
package protocol ClusterDecompressor: AnyObject {
    /// Fills `output` exactly from `input`, which may carry trailing padding
    /// (compressed data is stored in whole sectors). Throws
    /// `Qcow2Error.decompressionFailed` when the data is corrupt, ends before
    /// `output` is full, or holds more than `output` takes.
    func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws
}

/// A codec's compression state and output buffer, made once and kept by one
/// thread across clusters (QEMU sets both up per cluster; a reset stream
/// gives the same bytes as a new one, without the allocations).
package protocol ClusterCompressor: AnyObject {
    /// Compresses `input`; returns the compressed bytes, or nil when they would
    /// not be smaller than `limit` (the cluster is then written uncompressed).
    /// Like QEMU, the codec compresses into a buffer of `limit - 1` bytes, so
    /// with `limit` = cluster size the bytes are exactly qemu-img's. The bytes
    /// live in the compressor's buffer until its next call.
    func compress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> UnsafeRawBufferPointer?
}

extension ClusterCodec {
    /// Compresses `input` with a compressor of its own (see `ClusterCompressor`).
    package func compress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8]? {
        let compressor = try makeCompressor()
        // The bytes live in the compressor's buffer: copied out before it goes.
        return try withExtendedLifetime(compressor) { try compressor.compress(input, limit: limit).map { Array($0) } }
    }

    /// Decompresses with a decompressor of its own (see `ClusterDecompressor`).
    package func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        try makeDecompressor().decompress(input, into: output)
    }

    /// Convenience over arrays.
    package func compress(_ input: [UInt8], limit: Int) throws -> [UInt8]? {
        try input.withUnsafeBytes { try compress($0, limit: limit) }
    }

    /// Decompresses exactly `outputLength` bytes.
    package func decompress(_ input: [UInt8], outputLength: Int) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: outputLength)
        try input.withUnsafeBytes { src in
            try output.withUnsafeMutableBytes { dst in try decompress(src, into: dst) }
        }
        return output
    }
}

/// The output buffer a compressor keeps, grown to the largest limit asked.
struct CompressionOutput {
    private(set) var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// At least `count` bytes.
    mutating func reserve(_ count: Int) -> UnsafeMutableRawBufferPointer {
        if buffer.count < count {
            buffer.deallocate()
            buffer = .allocate(byteCount: count, alignment: 16)
        }
        return UnsafeMutableRawBufferPointer(rebasing: buffer[..<count])
    }

    func release() { buffer.deallocate() }
}

package enum ClusterCodecs {
    package static func codec(for type: CompressionType) -> ClusterCodec {
        switch type {
        case .zlib: return ZlibCodec()
        case .zstd: return ZstdCodec()
        }
    }
}
