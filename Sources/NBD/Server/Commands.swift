// Running one request against the export and answering it, as QEMU's server
// does (nbd_handle_request): structured READs split into data and hole
// chunks by block status, BLOCK_STATUS answered per selected context, every
// failure answered with the NBD error for its errno.

extension Transmission {
    func handle(_ work: Work) {
        let request = work.request
        if let refusal = work.refusal {
            return send(Self.errorReply(request, .invalid, refusal, structured: structuredReplies))
        }
        let backend = exportForHandling.backend
        let flags = request.commandFlags
        let offset = request.offset, length = UInt64(request.length)
        switch request.command {
        case .read:
            read(request)
        case .write:
            reply(request, "writing to file failed") {
                try work.payload.withUnsafeBytes { try backend.write($0, at: offset, fua: flags.contains(.fua)) }
            }
        case .writeZeroes:
            reply(request, "writing to file failed") {
                try backend.writeZeroes(at: offset, length: length, mayTrim: !flags.contains(.noHole),
                                        fastZero: flags.contains(.fastZero), fua: flags.contains(.fua))
            }
        case .flush:
            reply(request, "flush failed") { try backend.flush() }
        case .trim:
            reply(request, "discard failed") { try backend.trim(at: offset, length: length, fua: flags.contains(.fua)) }
        case .cache:
            reply(request, "caching data failed") { try backend.cache(at: offset, length: length) }
        case .blockStatus:
            blockStatus(request)
        case .disconnect, .resize, nil:
            send(Self.errorReply(request, .invalid, "invalid request type (\(request.type)) received",
                                 structured: structuredReplies))
        }
    }

    /// Runs `body` and answers success or its error.
    private func reply(_ request: NBDRequest, _ failure: String, _ body: () throws -> Void) {
        do {
            try body()
            send(Reply.simple(cookie: request.cookie, error: nil))
        } catch {
            let (code, _) = Self.classify(error)
            send(Self.errorReply(request, code, failure, structured: structuredReplies))
        }
    }

    static func classify(_ error: Error) -> (NBDErrorCode, String) {
        if let error = error as? NBDExportError { return (error.code, error.message) }
        return (.io, "\(error)")
    }

    private func read(_ request: NBDRequest) {
        let backend = exportForHandling.backend
        let flags = request.commandFlags
        if flags.contains(.fua) {
            do { try backend.flush() } catch {
                return send(Self.errorReply(request, Self.classify(error).0, "flush failed", structured: structuredReplies))
            }
        }
        let count = Int(request.length)
        if structuredReplies && !flags.contains(.dontFragment) && count > 0 {
            return sparseRead(request)
        }
        var data = [UInt8](repeating: 0, count: count)
        do {
            if count > 0 { try data.withUnsafeMutableBytes { try backend.read(into: $0, at: request.offset) } }
        } catch {
            return send(Self.errorReply(request, Self.classify(error).0, "reading from file failed",
                                        structured: structuredReplies))
        }
        if !structuredReplies {
            send(Reply.simple(cookie: request.cookie, error: nil), data)
        } else if count > 0 {
            send(Reply.dataChunkPrefix(cookie: request.cookie, offset: request.offset, count: count, done: true), data)
        } else {
            send(Reply.noneChunk(cookie: request.cookie))
        }
    }

    /// A structured READ: a hole chunk for each run that reads as zeroes, a
    /// data chunk for the rest, the last one flagged done.
    private func sparseRead(_ request: NBDRequest) {
        let backend = exportForHandling.backend
        let end = request.offset + UInt64(request.length)
        var position = request.offset
        while position < end {
            let extent: NBDAllocationExtent
            do {
                extent = try backend.allocation(at: position, length: end - position)
            } catch {
                let (code, message) = Self.classify(error)
                return send(Reply.errorChunk(cookie: request.cookie, error: code,
                                             message: "unable to check for holes: \(message)"))
            }
            let run = min(max(extent.length, 1), end - position)
            let done = position + run == end
            if extent.isZero {
                send(Reply.holeChunk(cookie: request.cookie, offset: position, length: UInt32(run), done: done))
            } else {
                var data = [UInt8](repeating: 0, count: Int(run))
                do {
                    try data.withUnsafeMutableBytes { try backend.read(into: $0, at: position) }
                } catch {
                    return send(Reply.errorChunk(cookie: request.cookie, error: Self.classify(error).0,
                                                 message: "reading from file failed"))
                }
                send(Reply.dataChunkPrefix(cookie: request.cookie, offset: position, count: Int(run), done: done), data)
            }
            position += run
        }
    }

    private func blockStatus(_ request: NBDRequest) {
        guard request.length > 0 else {
            return send(Self.errorReply(request, .invalid, "need non-zero length", structured: structuredReplies))
        }
        let contexts = metaContexts.contexts(of: exportForHandling)
        guard !contexts.isEmpty else {
            return send(Self.errorReply(request, .invalid, "CMD_BLOCK_STATUS not negotiated",
                                        structured: structuredReplies))
        }
        let one = request.commandFlags.contains(.requestOne)
        for (index, context) in contexts.enumerated() {
            let done = index == contexts.count - 1
            do {
                let extents = try self.extents(context.id, request.offset, UInt64(request.length), one: one)
                send(Reply.blockStatusChunk(cookie: request.cookie, contextID: context.id, extents: extents, done: done))
            } catch {
                return send(Reply.errorChunk(cookie: request.cookie, error: Self.classify(error).0,
                                             message: "can't get block status"))
            }
        }
    }

    /// The extents of one context over the range, neighbours with equal
    /// flags merged, at most `maxBlockStatusExtents` (1 with REQ_ONE).
    private func extents(_ context: UInt32, _ offset: UInt64, _ length: UInt64,
                         one: Bool) throws -> [(length: UInt32, flags: UInt32)] {
        let backend = exportForHandling.backend
        // A bitmap is read once for the whole request, as QEMU holds its lock.
        let bitmap = context >= NBDProtocol.dirtyBitmapFirstID
            ? exportForHandling.bitmaps[Int(context - NBDProtocol.dirtyBitmapFirstID)] : nil
        let bits = try bitmap?.current()
        let limit = one ? 1 : NBDProtocol.maxBlockStatusExtents
        var list: [(length: UInt32, flags: UInt32)] = []
        var position = offset
        let end = offset + length
        while position < end {
            let run: UInt64, flags: UInt32
            if let bitmap, let bits {
                (run, flags) = bitmap.extent(of: bits, at: position, length: end - position)
            } else if context == NBDProtocol.baseAllocationID {
                let extent = try backend.allocation(at: position, length: end - position)
                (run, flags) = (extent.length, extent.flags)
            } else {
                let extent = try backend.allocationDepth(at: position, length: end - position)
                (run, flags) = (extent.length, extent.depth)
            }
            let step = min(max(run, 1), end - position)
            if let last = list.last, last.flags == flags, UInt64(last.length) + step <= UInt64(UInt32.max) {
                list[list.count - 1].length += UInt32(step)
            } else if list.count < limit {
                list.append((UInt32(step), flags))
            } else {
                break
            }
            position += step
        }
        return list
    }
}
