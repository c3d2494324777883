// Fixed newstyle negotiation, as QEMU's server runs it (nbd/server.c,
// nbd_negotiate_options): the greeting, the client's flags, then options
// until NBD_OPT_GO or NBD_OPT_EXPORT_NAME moves to transmission, or ABORT
// or a protocol violation ends the connection. Every option payload is read
// against its announced length (at most 32 MiB, never buffered whole:
// names and queries are at most 4096 bytes, anything else is skipped).

/// What negotiation needs of the server: finding and listing exports, TLS.
struct ExportDirectory: Sendable {
    var lookup: @Sendable (String) -> ExportEntry?
    var list: @Sendable () -> [NBDExport]
    var tls: (any NBDTLSProvider)?
}

/// A connection that reached transmission.
struct NegotiatedSession {
    var stream: any NBDTransport
    var entry: ExportEntry
    var structuredReplies: Bool
    var metaContexts: MetaContextSelection
}

/// Why negotiation ended without transmission.
enum NegotiationEnd: Error {
    /// The client sent NBD_OPT_ABORT (a clean end).
    case aborted
    /// A protocol violation or I/O failure: the connection is dropped.
    case failed(String)
    /// The greeting could not be written (before option negotiation).
    case greetingFailed(String)
}

final class Negotiation {
    private var stream: any NBDTransport
    private let socket: SocketTransport
    private let directory: ExportDirectory
    private var structured = false
    private var tlsActive = false
    private var meta = MetaContextSelection()
    /// The export the meta-context selection was made for.
    private var metaExport: ExportEntry?
    /// The option being handled and its unread payload.
    private var option: UInt32 = 0
    private var optionLeft: UInt32 = 0

    init(socket: SocketTransport, directory: ExportDirectory) {
        self.socket = socket
        self.stream = socket
        self.directory = directory
    }

    /// Runs the handshake to transmission; throws `NegotiationEnd`.
    func run() throws -> NegotiatedSession {
        var greeting = WireWriter()
        greeting.append(NBDProtocol.initialMagic)
        greeting.append(NBDProtocol.optionMagic)
        greeting.append(NBDProtocol.flagFixedNewstyle | NBDProtocol.flagNoZeroes)
        do {
            try stream.write(greeting.bytes)
        } catch let error as NBDTransportError {
            // Before option negotiation: QEMU reports it without that prefix.
            throw NegotiationEnd.greetingFailed("write failed: \(Self.describe(error, reading: false))")
        }

        var flags = try io("Failed to read flags") { try readUInt32() }
        let fixedNewstyle = flags & NBDProtocol.clientFlagFixedNewstyle != 0
        let noZeroes = flags & NBDProtocol.clientFlagNoZeroes != 0
        flags &= ~(NBDProtocol.clientFlagFixedNewstyle | NBDProtocol.clientFlagNoZeroes)
        if flags != 0 { throw NegotiationEnd.failed("Unknown client flags 0x\(String(flags, radix: 16)) received") }

        while true {
            let header = try io("Failed to read opts magic") { try stream.read(count: 16) }
            var reader = WireReader(header)
            guard reader.uint64() == NBDProtocol.optionMagic else { throw NegotiationEnd.failed("Bad magic received") }
            option = reader.uint32()!
            optionLeft = reader.uint32()!
            if optionLeft > NBDProtocol.maxBufferSize {
                throw NegotiationEnd.failed("len (\(optionLeft)) is larger than max len (\(NBDProtocol.maxBufferSize))")
            }
            if directory.tls != nil && !tlsActive {
                guard fixedNewstyle else { throw NegotiationEnd.failed("Unsupported option 0x\(String(option, radix: 16))") }
                try beforeTLS()
                continue
            }
            guard fixedNewstyle else {
                guard option == NBDProtocol.Option.exportName.rawValue else {
                    throw NegotiationEnd.failed("Unsupported option \(option) (\(NBDProtocol.optionName(option)))")
                }
                return try exportName(noZeroes: noZeroes)
            }
            switch NBDProtocol.Option(rawValue: option) {
            case .list:
                if optionLeft > 0 { try rejectLength() } else { try list() }
            case .abort:
                try? sendReply(.ack)  // the client need not wait for it
                throw NegotiationEnd.aborted
            case .exportName:
                return try exportName(noZeroes: noZeroes)
            case .info, .go:
                if let session = try info() { return session }
            case .startTLS:
                if optionLeft > 0 {
                    try rejectLength()
                } else if directory.tls != nil {
                    try sendError(.errInvalid, "TLS already enabled")
                } else {
                    // The hook for TLS: a server without a provider refuses by policy.
                    try sendError(.errPolicy, "TLS not configured")
                }
            case .structuredReply:
                if optionLeft > 0 {
                    try rejectLength()
                } else if structured {
                    try sendError(.errInvalid, "structured reply already negotiated")
                } else {
                    try sendReply(.ack)
                    structured = true
                }
            case .listMetaContext, .setMetaContext:
                try metaContexts()
            default:
                try drop(.errUnsupported, "Unsupported option \(option) (\(NBDProtocol.optionName(option)))")
            }
        }
    }

    // MARK: Options

    /// A TLS-only server before STARTTLS (QEMU's order of checks).
    private func beforeTLS() throws {
        switch NBDProtocol.Option(rawValue: option) {
        case .startTLS:
            if optionLeft > 0 {
                try rejectLength()
                throw NegotiationEnd.failed("option '\(NBDProtocol.optionName(option))' has unexpected length")
            }
            try sendReply(.ack)
            do {
                stream = try directory.tls!.startTLS(over: socket)
            } catch {
                // The TLS layer words it (QEMU's qcrypto: "TLS handshake failed: ...").
                throw NegotiationEnd.failed("\(error)")
            }
            tlsActive = true
        case .exportName:
            throw NegotiationEnd.failed("Option 0x\(String(option, radix: 16)) not permitted before TLS")
        case .abort:
            try? drop(.errTLSRequired, "Option 0x\(String(option, radix: 16)) not permitted before TLS")
            throw NegotiationEnd.aborted
        default:
            try drop(.errTLSRequired, "Option 0x\(String(option, radix: 16)) not permitted before TLS")
        }
    }

    private func list() throws {
        for export in directory.list() {
            let name = Array(export.name.utf8), text = Array((export.description ?? "").utf8)
            var payload = WireWriter(capacity: 4 + name.count + text.count)
            payload.append(UInt32(name.count))
            payload.append(bytes: name)
            payload.append(bytes: text)
            try sendReply(.server, payload.bytes)
        }
        try sendReply(.ack)
    }

    /// NBD_OPT_EXPORT_NAME: no way to report an error but to hang up.
    private func exportName(noZeroes: Bool) throws -> NegotiatedSession {
        guard optionLeft <= NBDProtocol.maxStringSize else { throw NegotiationEnd.failed("Bad length received") }
        let name = try io("Failed to read export name") { try stream.read(count: Int(optionLeft)) }
        optionLeft = 0
        guard let entry = directory.lookup(String(decoding: name, as: UTF8.self)) else {
            throw NegotiationEnd.failed("export not found")
        }
        var reply = WireWriter(capacity: 134)
        reply.append(entry.export.exportSize)
        reply.append(flags(of: entry).rawValue)
        if !noZeroes { reply.append(zeroes: NBDProtocol.exportNameReplyPadding) }
        try io("write failed", reading: false) { try stream.write(reply.bytes) }
        return session(for: entry)
    }

    /// NBD_OPT_INFO and NBD_OPT_GO; a session when GO succeeded.
    private func info() throws -> NegotiatedSession? {
        guard let nameBytes = try readName() else { return nil }
        guard let countBytes = try readPayload(2) else { return nil }
        var countReader = WireReader(countBytes)
        var requests = countReader.uint16()!
        var sendName = false, blockSize = false
        while requests > 0 {
            requests -= 1
            guard let request = try readPayload(2) else { return nil }
            var requestReader = WireReader(request)
            switch NBDProtocol.Info(rawValue: requestReader.uint16()!) {
            case .name: sendName = true
            case .blockSize: blockSize = true
            default: break
            }
        }
        if optionLeft > 0 {
            try rejectLength()
            return nil
        }
        let name = String(decoding: nameBytes, as: UTF8.self)
        guard let entry = directory.lookup(name) else {
            try sendError(.errUnknown, "export '\(Self.sanitized(name))' not present")
            return nil
        }
        let export = entry.export
        if sendName { try sendInfo(.name, nameBytes) }
        if let text = export.description { try sendInfo(.description, Array(text.utf8)) }
        // The minimum is the real alignment only for clients that promise to
        // honour it (asked for block sizes) or merely ask (INFO); else 1.
        let alignment = export.backend.requestAlignment
        let minimum = (option == NBDProtocol.Option.info.rawValue || blockSize) ? alignment : 1
        var sizes = WireWriter(capacity: 12)
        sizes.append(minimum)
        sizes.append(max(4096, minimum))
        sizes.append(min(export.backend.maxTransfer, NBDProtocol.maxBufferSize))
        try sendInfo(.blockSize, sizes.bytes)
        var exportInfo = WireWriter(capacity: 10)
        exportInfo.append(export.exportSize)
        exportInfo.append(flags(of: entry).rawValue)
        try sendInfo(.export, exportInfo.bytes)
        if option == NBDProtocol.Option.info.rawValue && !blockSize && alignment > 1 {
            try sendError(.errBlockSizeRequired, "request NBD_INFO_BLOCK_SIZE to use this export")
            return nil
        }
        try sendReply(.ack)
        guard option == NBDProtocol.Option.go.rawValue else { return nil }
        return session(for: entry)
    }

    private func metaContexts() throws {
        let listing = option == NBDProtocol.Option.listMetaContext.rawValue
        if !listing && !structured {
            try drop(.errInvalid, "request option '\(NBDProtocol.optionName(option))' when structured reply is not negotiated")
            return
        }
        if !listing {
            meta = MetaContextSelection()
            metaExport = nil
        }
        guard let nameBytes = try readName() else { return }
        let name = String(decoding: nameBytes, as: UTF8.self)
        guard let entry = directory.lookup(name) else {
            try drop(.errUnknown, "export '\(Self.sanitized(name))' not present")
            return
        }
        guard let countBytes = try readPayload(4) else { return }
        var queryCount = WireReader(countBytes)
        let queries = queryCount.uint32()!
        var selection = MetaContextSelection()
        if listing && queries == 0 {
            selection = .all(of: entry.export)
        } else {
            for _ in 0..<queries {
                guard let lengthBytes = try readPayload(4) else { return }
                var lengthReader = WireReader(lengthBytes)
                let length = lengthReader.uint32()!
                if length > NBDProtocol.maxStringSize {
                    // Too long to be a context of ours: skipped, not an error.
                    guard length <= optionLeft else {
                        try drop(.errInvalid, "Inconsistent lengths in option \(NBDProtocol.optionName(option))")
                        return
                    }
                    optionLeft -= length
                    try io("Failed to read option") { try stream.discard(count: UInt64(length)) }
                    continue
                }
                guard let query = try readPayload(Int(length), refusingNUL: true) else { return }
                selection.add(query: String(decoding: query, as: UTF8.self), of: entry.export, listing: listing)
            }
        }
        if optionLeft > 0 {
            try rejectLength()
            return
        }
        for context in selection.contexts(of: entry.export) {
            var payload = WireWriter(capacity: 4 + context.name.utf8.count)
            payload.append(listing ? 0 : context.id)
            payload.append(bytes: context.name.utf8)
            try sendReply(.metaContext, payload.bytes)
        }
        try sendReply(.ack)
        if !listing {
            meta = selection
            metaExport = entry
        }
    }

    // MARK: Helpers

    private func session(for entry: ExportEntry) -> NegotiatedSession {
        // A selection made for another export does not carry over.
        let contexts = metaExport === entry ? meta : MetaContextSelection()
        return NegotiatedSession(stream: stream, entry: entry, structuredReplies: structured, metaContexts: contexts)
    }

    private func flags(of entry: ExportEntry) -> NBDProtocol.TransmissionFlags {
        var flags = entry.export.transmissionFlags
        if structured { flags.insert(.sendDF) }
        return flags
    }

    /// A name: 32-bit length (at most 4096) and that many bytes, no NUL.
    private func readName() throws -> [UInt8]? {
        guard let lengthBytes = try readPayload(4) else { return nil }
        var lengthReader = WireReader(lengthBytes)
        let length = lengthReader.uint32()!
        guard length <= NBDProtocol.maxStringSize else {
            try drop(.errInvalid, "Invalid name length: \(length)")
            return nil
        }
        return try readPayload(Int(length), refusingNUL: true)
    }

    /// `count` bytes of the option's payload; nil when the option was
    /// answered with an error instead (lengths that do not add up, a NUL).
    private func readPayload(_ count: Int, refusingNUL: Bool = false) throws -> [UInt8]? {
        guard count <= optionLeft else {
            try drop(.errInvalid, "Inconsistent lengths in option \(NBDProtocol.optionName(option))")
            return nil
        }
        optionLeft -= UInt32(count)
        let bytes = try io("Failed to read option") { try stream.read(count: count) }
        if refusingNUL && bytes.contains(0) {
            try drop(.errInvalid, "Unexpected embedded NUL in option \(NBDProtocol.optionName(option))")
            return nil
        }
        return bytes
    }

    /// Answers an option that should have had no payload (or less of it).
    private func rejectLength() throws {
        try drop(.errInvalid, "option '\(NBDProtocol.optionName(option))' has unexpected length")
    }

    /// Skips the rest of the option's payload and answers with an error.
    private func drop(_ type: NBDProtocol.OptionReply, _ message: String) throws {
        let left = optionLeft
        optionLeft = 0
        try io("Failed to read option") { try stream.discard(count: UInt64(left)) }
        try sendError(type, message)
    }

    private func sendError(_ type: NBDProtocol.OptionReply, _ message: String) throws {
        try sendReply(type, Array(message.utf8))
    }

    private func sendInfo(_ info: NBDProtocol.Info, _ payload: [UInt8]) throws {
        var bytes = WireWriter(capacity: 2 + payload.count)
        bytes.append(info.rawValue)
        bytes.append(bytes: payload)
        try sendReply(.info, bytes.bytes)
    }

    private func sendReply(_ type: NBDProtocol.OptionReply, _ payload: [UInt8] = []) throws {
        var reply = WireWriter(capacity: 20 + payload.count)
        reply.append(NBDProtocol.optionReplyMagic)
        reply.append(option)
        reply.append(type.rawValue)
        reply.append(UInt32(payload.count))
        reply.append(bytes: payload)
        try io("write failed", reading: false) { try stream.write(reply.bytes) }
    }

    private func readUInt32() throws -> UInt32 {
        var reader = WireReader(try stream.read(count: 4))
        return reader.uint32()!
    }

    /// Runs a transport call; a failure ends negotiation with `what`.
    private func io<T>(_ what: String, reading: Bool = true, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as NBDTransportError {
            throw NegotiationEnd.failed("\(what): \(Self.describe(error, reading: reading))")
        }
    }

    /// A transport failure in QEMU's words (its socket channel's).
    static func describe(_ error: NBDTransportError, reading: Bool) -> String {
        switch error {
        case .endOfStream: return "Unexpected end-of-file before all data were read"
        case let .io(code):
            return "Unable to \(reading ? "read from" : "write to") socket: \(String(cString: strerror(code)))"
        case .timedOut: return "handshake timed out"
        }
    }

    /// A name as error messages quote it: at most 80 bytes.
    private static func sanitized(_ name: String) -> String {
        let bytes = Array(name.utf8)
        guard bytes.count >= 80 else { return name }
        return String(decoding: bytes[..<80], as: UTF8.self) + "..."
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
