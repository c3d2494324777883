// zstd for compressed clusters (compression_type 1). Streaming decompression:
// the stored data ends with sector padding after the frame, so we stop as soon
// as the cluster is full rather than asking zstd to consume all input.
import CZstd

public struct ZstdCodec: ClusterCodec {
    public init() {}

    public func compress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8]? {
        guard let cctx = ZSTD_createCCtx() else { throw Qcow2Error.decompressionFailed("zstd: cannot create context") }
        defer { ZSTD_freeCCtx(cctx) }
        var output = [UInt8](repeating: 0, count: limit)
        let produced: Int? = output.withUnsafeMutableBytes { out in
            var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
            var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
            while true {
                let remaining = ZSTD_compressStream2(cctx, &outBuffer, &inBuffer, ZSTD_e_end)
                if ZSTD_isError(remaining) != 0 { return nil }
                if remaining == 0 { return outBuffer.pos }
                if outBuffer.pos == outBuffer.size { return nil }
            }
        }
        guard let produced, produced < limit else { return nil }
        output.removeLast(output.count - produced)
        return output
    }

    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        guard let dctx = ZSTD_createDCtx() else { throw Qcow2Error.decompressionFailed("zstd: cannot create context") }
        defer { ZSTD_freeDCtx(dctx) }
        var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        while outBuffer.pos < outBuffer.size {
            let previousIn = inBuffer.pos, previousOut = outBuffer.pos
            let rc = ZSTD_decompressStream(dctx, &outBuffer, &inBuffer)
            if ZSTD_isError(rc) != 0 {
                throw Qcow2Error.decompressionFailed("zstd: " + String(cString: ZSTD_getErrorName(rc)))
            }
            // No progress at all: the compressed data ends before the cluster does.
            if inBuffer.pos == previousIn && outBuffer.pos == previousOut {
                throw Qcow2Error.decompressionFailed("zstd: compressed data ends \(outBuffer.size - outBuffer.pos) bytes early")
            }
        }
    }
}
