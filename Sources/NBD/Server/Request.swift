// A transmission request: its header on the wire and the checks QEMU's
// server makes before running it (nbd_co_receive_request), in QEMU's order.
// Pure functions of the header and the export, so the fuzz target can
// drive them without a socket.

/// One request header.
struct NBDRequest: Equatable, Sendable {
    var flags: UInt16
    var type: UInt16
    var cookie: UInt64
    var offset: UInt64
    var length: UInt32

    var command: NBDProtocol.Command? { NBDProtocol.Command(rawValue: type) }
    var commandFlags: NBDProtocol.CommandFlags { NBDProtocol.CommandFlags(rawValue: flags) }

    /// Decodes a 28-byte header; nil when the magic is wrong (the client is
    /// then dropped).
    init?(header bytes: [UInt8]) {
        var reader = WireReader(bytes)
        guard bytes.count == NBDProtocol.requestHeaderSize, reader.uint32() == NBDProtocol.requestMagic else {
            return nil
        }
        flags = reader.uint16()!
        type = reader.uint16()!
        cookie = reader.uint64()!
        offset = reader.uint64()!
        length = reader.uint32()!
    }

    init(flags: UInt16, type: UInt16, cookie: UInt64, offset: UInt64, length: UInt32) {
        self.flags = flags
        self.type = type
        self.cookie = cookie
        self.offset = offset
        self.length = length
    }
}

/// What the server does with a request after reading its header.
struct RequestPlan: Equatable, Sendable {
    /// Payload bytes that follow the header and must be read (WRITE).
    var payload: UInt32 = 0
    /// The request is refused with EINVAL and this message.
    var refusal: String?
    /// The connection ends: right away (DISC, no reply), or after the
    /// refusal is sent (a WRITE whose payload was not read).
    var disconnect = false
}

extension NBDRequest {
    /// QEMU's checks, in its order: DISC ends the connection; READ, WRITE
    /// and CACHE may not exceed 32 MiB (a WRITE that does is refused and
    /// its connection dropped, its payload unread); then the read-only bit,
    /// the range against `size`, and the command's flags.
    func plan(size: UInt64, readOnly: Bool, structured: Bool) -> RequestPlan {
        var validFlags: NBDProtocol.CommandFlags = .fua
        var checkLength = false, checkReadOnly = false
        var plan = RequestPlan()
        switch command {
        case .disconnect:
            plan.disconnect = true
            return plan
        case .read:
            if structured { validFlags.insert(.dontFragment) }
            checkLength = true
        case .write:
            checkLength = true
            checkReadOnly = true
        case .flush:
            break
        case .trim:
            checkReadOnly = true
        case .cache:
            checkLength = true
        case .writeZeroes:
            validFlags.formUnion([.noHole, .fastZero])
            checkReadOnly = true
        case .blockStatus:
            validFlags.insert(.requestOne)
        case .resize, nil:
            break  // answered as an invalid request type when run
        }
        if checkLength && length > NBDProtocol.maxBufferSize {
            plan.refusal = "len (\(length)) is larger than max len (\(NBDProtocol.maxBufferSize))"
            plan.disconnect = command == .write
            return plan
        }
        if command == .write { plan.payload = length }
        if readOnly && checkReadOnly {
            plan.refusal = "Export is read-only"
        } else if offset > size || UInt64(length) > size - offset {
            plan.refusal = "operation past EOF; From: \(offset), Len: \(length), Size: \(size)"
        } else if !validFlags.isSuperset(of: commandFlags) {
            plan.refusal = "unsupported flags for command \(NBDProtocol.commandName(type)) (got 0x\(String(flags, radix: 16)))"
        }
        return plan
    }
}
