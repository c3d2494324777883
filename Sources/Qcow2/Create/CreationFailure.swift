// Failures of image creation (`Qcow2Error.creation`), worded as QEMU 7.2
// words them (qemu-img prints them after "<file>: ").

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Error {
    /// Why an image could not be created: invalid options, or a step of the
    /// creation that failed. Carried by `Qcow2Error.creation`.
    public enum Creation: Equatable, Sendable {
        case invalidClusterSize
        case extendedL2NeedsVersion3
        case extendedL2ClusterTooSmall(minimum: UInt64)
        case backingWithPreallocation
        case backingFormatWithoutBackingFile
        case lazyRefcountsNeedVersion3
        case invalidRefcountWidth
        case refcountWidthNeedsVersion3
        case compressionTypeNeedsVersion3
        /// The image file could not be created or opened.
        case couldNotCreate(path: String, errno: Int32)
        /// The file exists and the creator was not asked to replace it.
        case fileExists(path: String)
        /// Growing the image to its size failed; `reason` is QEMU's chain of
        /// messages after "Could not resize image: ".
        case couldNotResize(reason: String)
        /// Some structure would exceed QEMU's limits (EFBIG): the L1 table, the
        /// refcount table, or the host file itself.
        case imageTooLarge(format: String, clusterSizeHint: Bool)
        case couldNotAssignBackingFile(name: String, format: String?, errno: Int32)
        /// A raw image asked for a preallocation mode only qcow2 has.
        case unsupportedPreallocation(Preallocation)
        /// A raw image's file could not be resized ("Could not resize file: ...").
        case couldNotResizeFile(errno: Int32)
        case couldNotPreallocate(errno: Int32)
        case couldNotWriteZeros(errno: Int32)
    }
}

extension Qcow2Error.Creation: CustomStringConvertible {
    /// The message as qemu-img prints it after "<file>: ".
    public var description: String {
        switch self {
        case .invalidClusterSize:
            return "Cluster size must be a power of two between 512 and 2048k"
        case .extendedL2NeedsVersion3:
            return "Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)"
        case let .extendedL2ClusterTooSmall(minimum):
            return "Extended L2 entries are only supported with cluster sizes of at least \(minimum) bytes"
        case .backingWithPreallocation:
            return "Backing file and preallocation can only be used at the same time if extended_l2 is on"
        case .backingFormatWithoutBackingFile:
            return "Backing format cannot be used without backing file"
        case .lazyRefcountsNeedVersion3:
            return "Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)"
        case .invalidRefcountWidth:
            return "Refcount width must be a power of two and may not exceed 64 bits"
        case .refcountWidthNeedsVersion3:
            return "Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)"
        case .compressionTypeNeedsVersion3:
            return "Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)"
        case let .couldNotCreate(path, code):
            return "Could not create '\(path)': \(errnoDescription(code))"
        case let .fileExists(path):
            return "Could not create '\(path)': \(errnoDescription(EEXIST))"
        case let .couldNotResize(reason):
            return "Could not resize image: " + reason
        case let .imageTooLarge(format, hint):
            return "The image size is too large for file format '\(format)'" + (hint ? " (try using a larger cluster size)" : "")
        case let .couldNotAssignBackingFile(name, format, code):
            return "Could not assign backing file '\(name)' with format '\(format ?? "(null)")': \(errnoDescription(code))"
        case let .unsupportedPreallocation(mode):
            return "Unsupported preallocation mode: \(mode.rawValue)"
        case let .couldNotResizeFile(code):
            return "Could not resize file: \(errnoDescription(code))"
        case let .couldNotPreallocate(code):
            return "Could not preallocate new data: \(errnoDescription(code))"
        case let .couldNotWriteZeros(code):
            return "Could not write zeros for preallocation: \(errnoDescription(code))"
        }
    }
}

/// QEMU's -EFBIG, raised where a structure would outgrow its limit; the
/// creator reports it as `imageTooLarge`.
struct FileTooLarge: Error {}

extension Qcow2Error.Creation {
    /// A host file operation failed with EFBIG, which qemu-img reports as
    /// "image too large" whatever the step.
    var isFileTooLarge: Bool {
        switch self {
        case .couldNotResizeFile(EFBIG), .couldNotPreallocate(EFBIG), .couldNotWriteZeros(EFBIG): return true
        default: return false
        }
    }
}
