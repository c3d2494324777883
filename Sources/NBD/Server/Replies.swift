// Transmission replies as bytes: simple replies, and structured reply chunks
// (data, hole, block status, error, none), each built whole so that one
// write under the connection's send lock puts it on the wire.

enum Reply {
    static func simple(cookie: UInt64, error: NBDErrorCode?) -> [UInt8] {
        var reply = WireWriter(capacity: 16)
        reply.append(NBDProtocol.simpleReplyMagic)
        reply.append(error?.rawValue ?? 0)
        reply.append(cookie)
        return reply.bytes
    }

    /// A chunk header for `length` bytes of chunk payload.
    static func chunkHeader(cookie: UInt64, type: NBDProtocol.ChunkType, done: Bool, length: Int) -> [UInt8] {
        var header = WireWriter(capacity: 20)
        header.append(NBDProtocol.structuredReplyMagic)
        header.append(done ? NBDProtocol.chunkFlagDone : 0)
        header.append(type.rawValue)
        header.append(cookie)
        header.append(UInt32(length))
        return header.bytes
    }

    /// NBD_REPLY_TYPE_OFFSET_DATA's header and offset; the data follows.
    static func dataChunkPrefix(cookie: UInt64, offset: UInt64, count: Int, done: Bool) -> [UInt8] {
        var bytes = chunkHeader(cookie: cookie, type: .offsetData, done: done, length: 8 + count)
        var field = WireWriter(capacity: 8)
        field.append(offset)
        bytes += field.bytes
        return bytes
    }

    static func holeChunk(cookie: UInt64, offset: UInt64, length: UInt32, done: Bool) -> [UInt8] {
        var chunk = WireWriter(capacity: 32)
        chunk.append(bytes: chunkHeader(cookie: cookie, type: .offsetHole, done: done, length: 12))
        chunk.append(offset)
        chunk.append(length)
        return chunk.bytes
    }

    static func noneChunk(cookie: UInt64) -> [UInt8] {
        chunkHeader(cookie: cookie, type: .none, done: true, length: 0)
    }

    static func errorChunk(cookie: UInt64, error: NBDErrorCode, message: String) -> [UInt8] {
        // A message fits the 16-bit length field (QEMU's are short anyway).
        let text = Array(message.utf8.prefix(4096))
        var chunk = WireWriter(capacity: 26 + text.count)
        chunk.append(bytes: chunkHeader(cookie: cookie, type: .error, done: true, length: 6 + text.count))
        chunk.append(error.rawValue)
        chunk.append(UInt16(text.count))
        chunk.append(bytes: text)
        return chunk.bytes
    }

    static func blockStatusChunk(cookie: UInt64, contextID: UInt32, extents: [(length: UInt32, flags: UInt32)],
                                 done: Bool) -> [UInt8] {
        var chunk = WireWriter(capacity: 24 + 8 * extents.count)
        chunk.append(bytes: chunkHeader(cookie: cookie, type: .blockStatus, done: done, length: 4 + 8 * extents.count))
        chunk.append(contextID)
        for extent in extents {
            chunk.append(extent.length)
            chunk.append(extent.flags)
        }
        return chunk.bytes
    }
}
