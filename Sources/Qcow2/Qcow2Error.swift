// One error type for the codec, for opening, reading, writing, creating,
// info and check. Validation cases carry the offending value; their descriptions state the same facts in the same words as qemu-img 7.2,
// because the CLI prints them after "Could not open '...': " and must match
// qemu-img line for line. I/O cases name the step that failed.

/// Every error the codec throws. `description` is the message qemu-img or
/// qemu-io prints for the same failure (after their prefixes).
public enum Qcow2Error: Error, Equatable, Sendable {
    // Opening and I/O
    case io(step: String, errno: Int32)
    /// The image file itself could not be opened (reads like QEMU: "Could not open 'x': reason").
    case openFailed(path: String, errno: Int32)
    /// The file opened but is a directory (read-only opens of one succeed).
    case notRegularFile(path: String)
    /// cache=none/directsync on a file system that refuses O_DIRECT (the
    /// file opens without it): QEMU's wording.
    case directIOUnsupported(path: String)
    /// No O_DIRECT read of 1 to 4096 bytes worked (QEMU's alignment probe).
    case directIOAlignmentUnknown
    case shortRead(step: String, offset: UInt64, expected: Int)
    case fileTooSmall(step: String)
    /// Another process (or another open of the file) holds a permission
    /// this open needs or needs one it would not share: `reason` is QEMU's
    /// ("Failed to get \"write\" lock"), `path` the file as opened.
    case lockConflict(reason: String, path: String)
    /// Force-share asked for a writable open.
    case forceShareReadWrite

    // Header
    case notQcow2
    case unsupportedVersion(UInt32)
    case unsupportedClusterSize(bits: UInt32)
    case headerTooShort(UInt32)
    case headerExceedsCluster(UInt32)
    case invalidBackingFileOffset(UInt64)
    case backingFileNameTooLong(UInt32)
    /// Names from the image's feature name table (in table order), then
    /// "Unknown incompatible feature: <hex mask>" for bits it does not name.
    case unsupportedIncompatibleFeatures(names: [String])
    case unsupportedFeature(String)
    case imageIsCorrupt
    /// Extended L2 entries split a cluster into 32 subclusters of at least 512 bytes.
    case unsupportedSubclusterSize(UInt64)
    case refcountWidthTooLarge(order: UInt32)
    case invalidCompressionType(UInt8)
    /// The compression type incompatible bit disagrees with the type field:
    /// `bitSet` says whether the bit is set (with type zlib) or missing (with another type).
    case compressionTypeFlagMismatch(bitSet: Bool)
    case unsupportedEncryption(method: UInt32)
    /// More L1 entries needed than QEMU can index (size_to_l1 > INT_MAX), or a
    /// virtual size beyond what offsets can express.
    case imageTooBig(UInt64)
    /// A virtual size whose sector count overflows a signed 64-bit byte count.
    case virtualSizeTooLarge(UInt64)
    case noRefcountTable
    case tableTooLarge(table: String)
    case tableOffsetInvalid(table: String)
    case tableBeyondEndOfFile(table: String)
    case l1TableTooSmall
    case tooManySnapshots(UInt32)
    /// An extension record runs past the end of the extension area.
    case headerExtensionTooLarge
    case snapshotExtraDataTooLarge(entry: Int)
    case snapshotTableTooBig
    case snapshotTableTruncated(entry: Int)
    case invalidBitmaps(String)
    /// A known extension whose contents are invalid; the message is complete.
    case invalidHeaderExtension(String)
    case arithmeticOverflow(String)

    // Metadata found while reading
    case corruptMetadata(String)
    case compressionFailed(String)
    case decompressionFailed(String)

    // Backing chains
    /// An error while opening an overlay's backing file; nests once per layer,
    /// as QEMU's "Could not open backing file: ..." messages do.
    indirect case inBackingFile(Qcow2Error)
    case backingChainLoop(path: String)
    case backingChainTooDeep(limit: Int)
    case backingFileUnavailable(path: String, reason: String)
    case backingFormatUnknown(String)
    case pseudoProtocolBackingRefused(String)

    // Requests
    case requestOutOfRange(offset: UInt64, length: UInt64, size: UInt64)
    case readOnly
    case invalidArgument(String)

    // Writing
    /// A write, zero write, discard or flush failed where QEMU's fails with
    /// `errno` (qemu-io prints only its strerror); `reason` says why.
    case writeFailed(errno: Int32, reason: String)

    // Creating
    /// `Qcow2Creator` or `RawCreator` refused the options or failed a step.
    case creation(Creation)

    // Converting
    /// `RawExport` or `Qcow2Export` could not create, read or write.
    case export(Export)

    // Info
    /// `ImageInfoReader` could not open an image of the chain; `reason` is
    /// the whole message QEMU gives after "Could not open '<path>': ".
    case couldNotOpen(path: String, reason: String)
    /// `ImageInfoReader` found an image that is already above it in the chain.
    case backingFileCreatesLoop(path: String)

    // Check
    /// The check could not complete; QEMU's check returns `-errno` and
    /// qemu-img prints "Check failed: <strerror>".
    case checkFailed(errno: Int32)
}

extension Qcow2Error: CustomStringConvertible {
    /// The message in qemu-img's words.
    public var description: String {
        switch self {
        case let .io(step, errno): return "\(step): \(errnoDescription(errno))"
        case let .openFailed(path, errno): return "Could not open '\(path)': \(errnoDescription(errno))"
        case let .directIOUnsupported(path): return "Could not open '\(path)': filesystem does not support O_DIRECT"
        case .directIOAlignmentUnknown: return "Could not find working O_DIRECT alignment"
        case let .notRegularFile(path): return "'file' driver requires '\(path)' to be a regular file"
        case let .shortRead(step, offset, expected):
            return "\(step): unexpected end of file reading \(expected) bytes at offset \(offset)"
        case let .fileTooSmall(step): return "\(step): file is too small"
        case let .lockConflict(reason, path): return "\(reason)\n\(Self.lockHint(path: path))"
        case .forceShareReadWrite: return "force-share=on can only be used with read-only images"
        case .notQcow2: return "Image is not in qcow2 format"
        case let .unsupportedVersion(v): return "Unsupported qcow2 version \(v)"
        case let .unsupportedClusterSize(bits): return "Unsupported cluster size: 2^\(bits)"
        case .headerTooShort: return "qcow2 header too short"
        case .headerExceedsCluster: return "qcow2 header exceeds cluster size"
        case .invalidBackingFileOffset: return "Invalid backing file offset"
        case .backingFileNameTooLong: return "Backing file name too long"
        case let .unsupportedIncompatibleFeatures(names):
            return "Unsupported qcow2 feature(s): " + names.joined(separator: ", ")
        case let .unsupportedFeature(name): return "Unsupported qcow2 feature: \(name)"
        case .imageIsCorrupt: return "qcow2: Image is corrupt; cannot be opened read/write"
        case let .unsupportedSubclusterSize(size): return "Unsupported subcluster size: \(size)"
        case .refcountWidthTooLarge:
            return "Reference count entry width too large; may not exceed 64 bits"
        case let .invalidCompressionType(t): return "qcow2: unknown compression type: \(t)"
        case let .compressionTypeFlagMismatch(bitSet):
            return "qcow2: Compression type incompatible feature bit must " + (bitSet ? "not be set" : "be set")
        case let .unsupportedEncryption(method):
            switch method {
            case 1: return "AES-CBC encrypted qcow2 images are not supported"
            case 2: return "LUKS encrypted qcow2 images are not supported"
            default: return "Unsupported encryption method \(method)"
            }
        case .imageTooBig: return "Image is too big"
        case .virtualSizeTooLarge: return "Could not refresh total sector count: File too large"
        case .noRefcountTable: return "Image does not contain a reference count table"
        case let .tableTooLarge(table): return "\(table) too large"
        case let .tableOffsetInvalid(table): return "\(table) offset invalid"
        case let .tableBeyondEndOfFile(table): return "\(table) lies beyond the end of the file"
        case .l1TableTooSmall: return "L1 table is too small"
        case let .tooManySnapshots(n): return "Too many snapshots (\(n))"
        case .headerExtensionTooLarge: return "Header extension too large"
        case let .invalidHeaderExtension(message): return message
        case let .snapshotExtraDataTooLarge(entry): return "Too much extra metadata in snapshot table entry \(entry)"
        case .snapshotTableTooBig: return "Snapshot table is too big"
        case let .snapshotTableTruncated(entry):
            return "Snapshot table entry \(entry) lies beyond the end of the file"
        case let .invalidBitmaps(why): return why
        case let .arithmeticOverflow(what): return "Offset overflow: \(what)"
        case let .corruptMetadata(what): return "Image is corrupt: \(what)"
        case let .compressionFailed(what): return "Could not compress cluster: \(what)"
        case let .decompressionFailed(what): return "Could not decompress cluster: \(what)"
        case let .inBackingFile(inner): return BackingChain.nestedMessage(inner)
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
        case let .writeFailed(_, reason): return reason
        case let .creation(failure): return failure.description
        case let .export(failure): return failure.description
        case let .couldNotOpen(path, reason): return "Could not open '\(path)': \(reason)"
        case let .backingFileCreatesLoop(path): return "Backing file '\(path)' creates an infinite loop."
        case let .checkFailed(code): return errnoDescription(code)
        }
    }
}

extension Qcow2Error {
    /// The error below any "in backing file" wrapping: what actually went wrong.
    public var innermost: Qcow2Error {
        var error = self
        while case let .inBackingFile(inner) = error { error = inner }
        return error
    }
}

extension Qcow2Error {
    /// The hint QEMU adds below a lock conflict (QMP errors leave it out).
    package static func lockHint(path: String) -> String {
        "Is another process using the image [\(path)]?"
    }
}
