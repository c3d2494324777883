// One error type for the codec. Validation cases carry the offending value and
// read like QEMU's messages, so users of qemu-img recognise them; I/O cases
// name the step that failed.

public enum Qcow2Error: Error, Equatable, Sendable {
    // Opening and I/O
    case io(step: String, errno: Int32)
    case shortRead(step: String, offset: UInt64, expected: Int)
    case fileTooSmall(step: String)

    // Header
    case notQcow2
    case unsupportedVersion(UInt32)
    case unsupportedClusterSize(bits: UInt32)
    case headerTooShort(UInt32)
    case headerExceedsCluster(UInt32)
    case invalidBackingFileOffset(UInt64)
    case backingFileNameTooLong(UInt32)
    case unsupportedIncompatibleFeatures(names: [String])
    case unsupportedFeature(String)
    case imageIsCorrupt
    case refcountWidthTooLarge(order: UInt32)
    case invalidCompressionType(UInt8)
    case compressionTypeFlagMismatch
    case unsupportedEncryption(method: UInt32)
    case imageTooBig(UInt64)
    case tableTooLarge(table: String)
    case tableOffsetInvalid(table: String)
    case tableBeyondEndOfFile(table: String)
    case l1TableTooSmall
    case tooManySnapshots(UInt32)
    case snapshotExtraDataTooLarge(entry: Int)
    case snapshotTableTooBig
    case snapshotTableTruncated(entry: Int)
    case invalidBitmaps(String)
    case invalidHeaderExtension(String)
    case arithmeticOverflow(String)

    // Metadata found while reading
    case corruptMetadata(String)
    case decompressionFailed(String)

    // Backing chains
    case backingChainLoop(path: String)
    case backingChainTooDeep(limit: Int)
    case backingFileUnavailable(path: String, reason: String)
    case backingFormatUnknown(String)
    case pseudoProtocolBackingRefused(String)

    // Requests
    case requestOutOfRange(offset: UInt64, length: UInt64, size: UInt64)
    case readOnly
    case invalidArgument(String)
}

extension Qcow2Error: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .io(step, errno): return "\(step): \(errnoDescription(errno))"
        case let .shortRead(step, offset, expected):
            return "\(step): unexpected end of file reading \(expected) bytes at offset \(offset)"
        case let .fileTooSmall(step): return "\(step): file is too small"
        case .notQcow2: return "Image is not in qcow2 format"
        case let .unsupportedVersion(v): return "Unsupported qcow2 version \(v)"
        case let .unsupportedClusterSize(bits):
            return bits < 64 ? "Unsupported cluster size: 2^\(bits)" : "Unsupported cluster size: cluster_bits \(bits)"
        case let .headerTooShort(len): return "qcow2 header too short (header_length \(len))"
        case let .headerExceedsCluster(len): return "qcow2 header exceeds cluster size (header_length \(len))"
        case let .invalidBackingFileOffset(off): return "Invalid backing file offset \(off)"
        case let .backingFileNameTooLong(len): return "Backing file name too long (\(len) bytes)"
        case let .unsupportedIncompatibleFeatures(names):
            return "Unsupported qcow2 feature(s): " + names.joined(separator: ", ")
        case let .unsupportedFeature(name): return "Unsupported qcow2 feature: \(name)"
        case .imageIsCorrupt: return "qcow2: Image is corrupt; cannot be opened read/write"
        case let .refcountWidthTooLarge(order):
            return "Reference count entry width too large; may not exceed 64 bits (refcount_order \(order))"
        case let .invalidCompressionType(t): return "Unknown compression type \(t)"
        case .compressionTypeFlagMismatch:
            return "Compression type incompatible feature bit does not match the compression type field"
        case let .unsupportedEncryption(method):
            return method == 1
                ? "AES-CBC encrypted qcow2 images are not supported"
                : method == 2 ? "LUKS encrypted qcow2 images are not supported (full disk encryption)"
                : "Unsupported encryption method \(method)"
        case let .imageTooBig(size): return "Image is too big (virtual size \(size))"
        case let .tableTooLarge(table): return "\(table) too large"
        case let .tableOffsetInvalid(table): return "\(table) offset invalid"
        case let .tableBeyondEndOfFile(table): return "\(table) lies beyond the end of the file"
        case .l1TableTooSmall: return "L1 table is too small"
        case let .tooManySnapshots(n): return "Too many snapshots (\(n))"
        case let .snapshotExtraDataTooLarge(entry): return "Too much extra metadata in snapshot table entry \(entry)"
        case .snapshotTableTooBig: return "Snapshot table is too big"
        case let .snapshotTableTruncated(entry):
            return "Snapshot table entry \(entry) lies beyond the end of the file"
        case let .invalidBitmaps(why): return why
        case let .invalidHeaderExtension(why): return "Invalid header extension: \(why)"
        case let .arithmeticOverflow(what): return "Offset overflow: \(what)"
        case let .corruptMetadata(what): return "Image is corrupt: \(what)"
        case let .decompressionFailed(what): return "Could not decompress cluster: \(what)"
        case let .backingChainLoop(path): return "Backing chain loops back to '\(path)'"
        case let .backingChainTooDeep(limit): return "Backing chain is deeper than \(limit) images"
        case let .backingFileUnavailable(path, reason): return "Could not open backing file '\(path)': \(reason)"
        case let .backingFormatUnknown(fmt): return "Unknown backing file format '\(fmt)'"
        case let .pseudoProtocolBackingRefused(name):
            return "Backing file name '\(name)' uses a pseudo-protocol, which is refused"
        case let .requestOutOfRange(offset, length, size):
            return "Request out of range: offset \(offset), length \(length), image size \(size)"
        case .readOnly: return "Image is read-only"
        case let .invalidArgument(why): return why
        }
    }
}
