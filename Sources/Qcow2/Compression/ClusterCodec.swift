// Compressed clusters: one codec per compression type, chosen by the header.

/// Compresses one cluster and decompresses one cluster's worth of data.
package protocol ClusterCodec: Sendable {
    /// Compresses `input`; returns the compressed bytes, or nil when they would
    /// not be smaller than `limit` (the cluster is then written uncompressed).
    /// Like QEMU, the codec compresses into a buffer of `limit - 1` bytes, so
    /// with `limit` = cluster size the bytes are exactly qemu-img's.
    func compress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8]?
    /// Fills `output` exactly from `input`, which may carry trailing padding
    /// (compressed data is stored in whole sectors). Throws
    /// `Qcow2Error.decompressionFailed` when the data is corrupt, ends before
    /// `output` is full, or holds more than `output` takes.
    func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws
}

extension ClusterCodec {
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

package enum ClusterCodecs {
    package static func codec(for type: CompressionType) -> ClusterCodec {
        switch type {
        case .zlib: return ZlibCodec()
        case .zstd: return ZstdCodec()
        }
    }
}
