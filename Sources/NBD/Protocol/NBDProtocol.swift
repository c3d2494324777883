// The NBD protocol's numbers (NetworkBlockDevice/nbd doc/proto.md; QEMU's
// include/block/nbd.h names them the same): magics, handshake and
// transmission flags, options and their replies, commands, reply chunks,
// and the limits QEMU's server enforces. Everything on the wire is big-endian.

/// The protocol's constants, grouped by the phase they belong to.
public enum NBDProtocol {
    // MARK: Handshake

    /// "NBDMAGIC": the first eight bytes the server sends.
    public static let initialMagic: UInt64 = 0x4e42_444d_4147_4943
    /// "IHAVEOPT": newstyle negotiation; also the magic of every option.
    public static let optionMagic: UInt64 = 0x4948_4156_454f_5054
    /// The magic of every option reply.
    public static let optionReplyMagic: UInt64 = 0x0003_e889_0455_65a9

    /// Handshake flags the server sends (16 bits).
    public static let flagFixedNewstyle: UInt16 = 1 << 0
    public static let flagNoZeroes: UInt16 = 1 << 1
    /// Client flags (32 bits) answering them; any other bit ends the connection.
    public static let clientFlagFixedNewstyle: UInt32 = 1 << 0
    public static let clientFlagNoZeroes: UInt32 = 1 << 1

    // MARK: Limits (QEMU's, include/block/nbd.h)

    /// The largest READ/WRITE/CACHE payload and option payload: 32 MiB.
    public static let maxBufferSize: UInt32 = 32 << 20
    /// The longest export name, description or meta-context query.
    public static let maxStringSize = 4096
    /// Requests read from one connection before the first is answered
    /// (QEMU's MAX_NBD_REQUESTS): bounds a connection's memory.
    public static let maxRequestsInFlight = 16
    /// At most this many extents in one block-status chunk (1 MiB of them, QEMU's).
    public static let maxBlockStatusExtents = (1 << 20) / 8
    /// Bytes of zeroes after NBD_OPT_EXPORT_NAME's reply without NO_ZEROES.
    public static let exportNameReplyPadding = 124

    // MARK: Transmission flags (16 bits, per export)

    public struct TransmissionFlags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let hasFlags = Self(rawValue: 1 << 0)
        public static let readOnly = Self(rawValue: 1 << 1)
        public static let sendFlush = Self(rawValue: 1 << 2)
        public static let sendFUA = Self(rawValue: 1 << 3)
        public static let rotational = Self(rawValue: 1 << 4)
        public static let sendTrim = Self(rawValue: 1 << 5)
        public static let sendWriteZeroes = Self(rawValue: 1 << 6)
        public static let sendDF = Self(rawValue: 1 << 7)
        public static let canMultiConn = Self(rawValue: 1 << 8)
        public static let sendResize = Self(rawValue: 1 << 9)
        public static let sendCache = Self(rawValue: 1 << 10)
        public static let sendFastZero = Self(rawValue: 1 << 11)
    }

    // MARK: Options

    public enum Option: UInt32, Sendable {
        case exportName = 1, abort = 2, list = 3, peekExport = 4, startTLS = 5, info = 6, go = 7
        case structuredReply = 8, listMetaContext = 9, setMetaContext = 10, extendedHeaders = 11
    }

    /// Option reply types; errors have bit 31 set.
    public enum OptionReply: UInt32, Sendable {
        case ack = 1, server = 2, info = 3, metaContext = 4
        case errUnsupported = 0x8000_0001, errPolicy = 0x8000_0002, errInvalid = 0x8000_0003
        case errPlatform = 0x8000_0004, errTLSRequired = 0x8000_0005, errUnknown = 0x8000_0006
        case errShutdown = 0x8000_0007, errBlockSizeRequired = 0x8000_0008, errTooBig = 0x8000_0009
    }

    /// NBD_INFO_* items of NBD_REP_INFO (16 bits).
    public enum Info: UInt16, Sendable {
        case export = 0, name = 1, description = 2, blockSize = 3
    }

    // MARK: Transmission

    public static let requestMagic: UInt32 = 0x2560_9513
    public static let simpleReplyMagic: UInt32 = 0x6744_6698
    public static let structuredReplyMagic: UInt32 = 0x668e_33ef
    /// Request header: magic, flags, type, cookie, offset, length.
    public static let requestHeaderSize = 28

    public enum Command: UInt16, Sendable {
        case read = 0, write = 1, disconnect = 2, flush = 3, trim = 4, cache = 5
        case writeZeroes = 6, blockStatus = 7, resize = 8
    }

    public struct CommandFlags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let fua = Self(rawValue: 1 << 0)
        public static let noHole = Self(rawValue: 1 << 1)
        public static let dontFragment = Self(rawValue: 1 << 2)
        public static let requestOne = Self(rawValue: 1 << 3)
        public static let fastZero = Self(rawValue: 1 << 4)
    }

    /// Structured reply chunk types.
    public enum ChunkType: UInt16, Sendable {
        case none = 0, offsetData = 1, offsetHole = 2, blockStatus = 5
        case error = 0x8001, errorOffset = 0x8002
    }
    public static let chunkFlagDone: UInt16 = 1 << 0

    /// base:allocation extent flags.
    public static let stateHole: UInt32 = 1 << 0
    public static let stateZero: UInt32 = 1 << 1
    /// qemu:dirty-bitmap extent flag.
    public static let stateDirty: UInt32 = 1 << 0

    /// Meta-context names QEMU serves and the ids it gives them.
    public static let baseAllocation = "base:allocation"
    public static let allocationDepth = "qemu:allocation-depth"
    public static let baseAllocationID: UInt32 = 0
    public static let allocationDepthID: UInt32 = 1
    public static let dirtyBitmapPrefix = "qemu:dirty-bitmap:"
    /// The export's dirty bitmaps take ids from here on, in its order.
    public static let dirtyBitmapFirstID: UInt32 = 2
}
