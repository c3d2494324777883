// zstd for compressed clusters (compression_type 1), with QEMU's streaming
// loops: compression into one frame at zstd's default level, decompression
// frame by frame until the cluster is full, since the stored data ends with
// sector padding rather than at a recorded length.
import CZstd

package struct ZstdCodec: ClusterCodec {
    package init() {}

    package func makeCompressor() throws -> ClusterCompressor { try ZstdCompressor() }

    package var compressionType: CompressionType { .zstd }

    package func makeDecompressor() throws -> ClusterDecompressor { try ZstdDecompressor() }
}

/// One compression context, its session reset for each cluster (parameters
/// stay at their defaults, as in a new context).
final class ZstdCompressor: ClusterCompressor {
    private let cctx: OpaquePointer
    private var output = CompressionOutput()

    init() throws {
        guard let cctx = ZSTD_createCCtx() else { throw Qcow2Error.compressionFailed("zstd: cannot create context") }
        self.cctx = cctx
    }

    deinit {
        ZSTD_freeCCtx(cctx)
        output.release()
    }

    func compress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> UnsafeRawBufferPointer? {
        guard limit > 1 else { return nil }
        let reset = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only)
        if ZSTD_isError(reset) != 0 { throw Qcow2Error.compressionFailed("zstd: " + String(cString: ZSTD_getErrorName(reset))) }
        let out = output.reserve(limit - 1)
        var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        while true {
            let remaining = ZSTD_compressStream2(cctx, &outBuffer, &inBuffer, ZSTD_e_end)
            if ZSTD_isError(remaining) != 0 {
                throw Qcow2Error.compressionFailed("zstd: " + String(cString: ZSTD_getErrorName(remaining)))
            }
            if remaining == 0 { return UnsafeRawBufferPointer(rebasing: out[..<outBuffer.pos]) }
            // What is left to flush cannot fit: compressing does not pay.
            if remaining > outBuffer.size - outBuffer.pos { return nil }
        }
    }
}

/// One decompression context, its session reset for each cluster.
final class ZstdDecompressor: ClusterDecompressor {
    private let dctx: OpaquePointer

    init() throws {
        guard let dctx = ZSTD_createDCtx() else { throw Qcow2Error.decompressionFailed("zstd: cannot create context") }
        self.dctx = dctx
    }

    deinit { ZSTD_freeDCtx(dctx) }

    func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        let reset = ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only)
        if ZSTD_isError(reset) != 0 { throw Qcow2Error.decompressionFailed("zstd: " + String(cString: ZSTD_getErrorName(reset))) }
        var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var lastResult = 0
        while outBuffer.pos < outBuffer.size {
            let previousIn = inBuffer.pos, previousOut = outBuffer.pos
            lastResult = ZSTD_decompressStream(dctx, &outBuffer, &inBuffer)
            if ZSTD_isError(lastResult) != 0 {
                throw Qcow2Error.decompressionFailed("zstd: " + String(cString: ZSTD_getErrorName(lastResult)))
            }
            // No progress at all: the compressed data ends before the cluster does.
            if inBuffer.pos == previousIn && outBuffer.pos == previousOut {
                throw Qcow2Error.decompressionFailed("zstd: compressed data ends \(outBuffer.size - outBuffer.pos) bytes early")
            }
        }
        // The frame must be complete once the cluster is: more data means the
        // cluster would be larger than a cluster.
        if lastResult > 0 {
            throw Qcow2Error.decompressionFailed("zstd: compressed data holds more than \(output.count) bytes")
        }
    }
}
