// Compressed clusters: one codec per compression type, chosen by the header.

/// Compresses one cluster and decompresses one cluster's worth of data.
public protocol ClusterCodec: Sendable {
    /// Compresses `input`; returns the compressed bytes, or nil when they would
    /// not be smaller than `limit` (the cluster is then written uncompressed).
    func compress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8]?
    /// Fills `output` exactly from `input`, which may carry trailing padding
    /// (compressed data is stored in whole sectors).
    func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws
}

public enum ClusterCodecs {
    public static func codec(for type: CompressionType) -> ClusterCodec {
        switch type {
        case .zlib: return ZlibCodec()
        case .zstd: return ZstdCodec()
        }
    }
}
