// zlib for compressed clusters: raw deflate (no zlib header), 4 KiB window,
// exactly the parameters QEMU uses so that our compressed clusters are
// byte-identical to qemu-img's.
import CZlib

package struct ZlibCodec: ClusterCodec {
    /// Negative: raw deflate; 12: a 4 KiB window.
    static let windowBits: Int32 = -12
    static let memLevel: Int32 = 9

    package init() {}

    package func makeCompressor() throws -> ClusterCompressor { try ZlibCompressor() }

    package var compressionType: CompressionType { .zlib }

    package func makeDecompressor() throws -> ClusterDecompressor { try ZlibDecompressor() }
}

/// One deflate stream, reset for each cluster. zlib keeps a pointer to the
/// stream in its state, so the stream lives at a fixed address.
final class ZlibCompressor: ClusterCompressor {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private var output = CompressionOutput()

    init() throws {
        stream.initialize(to: z_stream())
        guard qk_deflateInit2(stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, ZlibCodec.windowBits, ZlibCodec.memLevel,
                              Z_DEFAULT_STRATEGY) == Z_OK else {
            stream.deallocate()
            throw Qcow2Error.compressionFailed("zlib: deflateInit2 failed")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
        output.release()
    }

    func compress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> UnsafeRawBufferPointer? {
        guard limit > 1 else { return nil }
        guard let inputCount = uInt(exactly: input.count), let capacity = uInt(exactly: limit - 1) else { return nil }
        guard deflateReset(stream) == Z_OK else { throw Qcow2Error.compressionFailed("zlib: deflateReset failed") }
        let out = output.reserve(Int(capacity))
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.pointee.avail_in = inputCount
        stream.pointee.next_out = out.bindMemory(to: Bytef.self).baseAddress
        stream.pointee.avail_out = capacity
        let result = deflate(stream, Z_FINISH)
        // Z_STREAM_END: everything fit; Z_OK or Z_BUF_ERROR: the buffer filled
        // first, so compressing does not pay.
        switch result {
        case Z_STREAM_END:
            return UnsafeRawBufferPointer(rebasing: out[..<(Int(capacity) - Int(stream.pointee.avail_out))])
        case Z_OK, Z_BUF_ERROR:
            return nil
        default:
            throw Qcow2Error.compressionFailed("zlib: deflate returned \(result)")
        }
    }
}

/// One inflate stream, reset for each cluster (at a fixed address, as zlib
/// requires).
final class ZlibDecompressor: ClusterDecompressor {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)

    init() throws {
        stream.initialize(to: z_stream())
        guard qk_inflateInit2(stream, ZlibCodec.windowBits) == Z_OK else {
            stream.deallocate()
            throw Qcow2Error.decompressionFailed("zlib: inflateInit2 failed")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        guard let inputCount = uInt(exactly: input.count), let outputCount = uInt(exactly: output.count) else {
            throw Qcow2Error.decompressionFailed("zlib: buffer too large")
        }
        guard inflateReset(stream) == Z_OK else { throw Qcow2Error.decompressionFailed("zlib: inflateReset failed") }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.pointee.avail_in = inputCount
        stream.pointee.next_out = output.bindMemory(to: Bytef.self).baseAddress
        stream.pointee.avail_out = outputCount
        let rc = inflate(stream, Z_FINISH)
        // As QEMU: the output must be full; Z_BUF_ERROR is fine then, because
        // the input's length is known only to the sector, so inflate may stop
        // before consuming the padding.
        guard (rc == Z_STREAM_END || rc == Z_BUF_ERROR) && stream.pointee.avail_out == 0 else {
            throw Qcow2Error.decompressionFailed("zlib: inflate returned \(rc) with \(stream.pointee.avail_out) bytes missing")
        }
    }
}
