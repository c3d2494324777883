// zlib for compressed clusters: raw deflate (no zlib header), 4 KiB window,
// exactly the parameters QEMU uses so that our compressed clusters are
// byte-identical to qemu-img's.
import CZlib

public struct ZlibCodec: ClusterCodec {
    /// Negative: raw deflate; 12: a 4 KiB window.
    static let windowBits: Int32 = -12
    static let memLevel: Int32 = 9

    public init() {}

    public func compress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8]? {
        var stream = z_stream()
        guard qk_deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, Self.windowBits, Self.memLevel, Z_DEFAULT_STRATEGY) == Z_OK else {
            throw Qcow2Error.decompressionFailed("deflateInit2 failed")
        }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: limit)
        let result: Int32 = output.withUnsafeMutableBytes { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            stream.next_out = out.bindMemory(to: Bytef.self).baseAddress
            stream.avail_out = uInt(out.count)
            return deflate(&stream, Z_FINISH)
        }
        // Z_STREAM_END: everything fit below the limit; anything else: not worth it.
        guard result == Z_STREAM_END else { return nil }
        let produced = limit - Int(stream.avail_out)
        guard produced < limit else { return nil }
        output.removeLast(output.count - produced)
        return output
    }

    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        var stream = z_stream()
        guard qk_inflateInit2(&stream, Self.windowBits) == Z_OK else {
            throw Qcow2Error.decompressionFailed("inflateInit2 failed")
        }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.avail_in = uInt(input.count)
        stream.next_out = output.bindMemory(to: Bytef.self).baseAddress
        stream.avail_out = uInt(output.count)
        let rc = inflate(&stream, Z_FINISH)
        // QEMU accepts Z_STREAM_END, and Z_BUF_ERROR once the output is full
        // (the input has sector padding after the deflate stream).
        let filled = stream.avail_out == 0
        guard rc == Z_STREAM_END || (rc == Z_BUF_ERROR && filled), filled else {
            throw Qcow2Error.decompressionFailed("zlib: inflate returned \(rc) with \(stream.avail_out) bytes missing")
        }
    }
}
