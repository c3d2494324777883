// The error values a transmission reply carries (proto.md "Error values"),
// and the mapping QEMU's server applies to the errno a request failed with
// (system_errno_to_nbd_errno): anything it does not name becomes EINVAL.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An NBD error value.
public enum NBDErrorCode: UInt32, Sendable, Error {
    case perm = 1, io = 5, noMemory = 12, invalid = 22, noSpace = 28
    case overflow = 75, notSupported = 95, shutdown = 108

    /// The NBD error for a failed request's errno, as QEMU maps it.
    public init(errno code: Int32) {
        switch code {
        case EPERM, EROFS: self = .perm
        case EIO: self = .io
        case ENOMEM: self = .noMemory
        case EDQUOT, EFBIG, ENOSPC: self = .noSpace
        case EOVERFLOW: self = .overflow
        case ENOTSUP: self = .notSupported
        case ESHUTDOWN: self = .shutdown
        default: self = .invalid
        }
    }
}

/// A request an export backend refuses or fails: the NBD error to answer
/// with and the message a structured error reply carries.
public struct NBDExportError: Error, Sendable, CustomStringConvertible {
    public var code: NBDErrorCode
    public var message: String
    public init(_ code: NBDErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
