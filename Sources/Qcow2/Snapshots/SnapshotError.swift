// Why a snapshot operation failed, with the errno QEMU's driver returns for it
// (qemu-img prints creation failures as "-27 (File too large)" and apply
// failures as "Failed to load snapshot: <strerror>") and, for delete, the
// message QEMU's driver sets.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A snapshot operation refused or failed.
public enum SnapshotError: Error, Equatable, CustomStringConvertible {
    /// No snapshot has this ID or name.
    case notFound
    /// The image already has QEMU's maximum number of snapshots (65536).
    case tooManySnapshots
    /// The image format has no internal snapshots (raw).
    case notSupported
    /// Applying a snapshot to an image with persistent dirty bitmaps (QEMU
    /// refuses: the bitmaps would no longer match the data).
    case activeDirtyBitmaps
    /// A step of a delete failed: QEMU's message for the step and the errno.
    case deleteStep(String, errno: Int32)

    /// The errno QEMU's driver returns.
    public var errno: Int32 {
        switch self {
        case .notFound: return ENOENT
        case .tooManySnapshots: return EFBIG
        case .notSupported: return ENOTSUP
        case .activeDirtyBitmaps: return EBUSY
        case let .deleteStep(_, code): return code
        }
    }

    public var description: String {
        switch self {
        case .notFound: return "Can't find the snapshot"
        case .tooManySnapshots: return "Too many snapshots"
        case .notSupported: return "Block driver does not support snapshots"
        case .activeDirtyBitmaps: return "Device has active dirty bitmaps"
        case let .deleteStep(step, code): return "\(step): \(String(cString: strerror(code)))"
        }
    }

    /// The errno of any error a snapshot operation throws.
    public static func errnoValue(of error: Error) -> Int32 {
        if let error = error as? SnapshotError { return error.errno }
        return Qcow2Error.errnoValue(of: error)
    }
}
