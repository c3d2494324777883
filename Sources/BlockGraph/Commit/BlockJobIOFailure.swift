// A block job's data I/O failed: which side (QEMU's BLOCK_JOB_ERROR
// `operation`: reading the source or writing the target) and why. The
// drivers ask the job's on-error policy what to do about it
// (`JobRunContext.errorAction`) and throw it when the answer is `report`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

public struct BlockJobIOFailure: Error, CustomStringConvertible {
    public enum Operation: String, Sendable {
        case read, write
    }
    public var operation: Operation
    public var underlying: Error

    public init(_ operation: Operation, _ underlying: Error) {
        self.operation = operation
        self.underlying = underlying
    }

    /// The errno behind the failure (EIO when the codec gave none).
    public var errorNumber: Int32 {
        switch underlying as? Qcow2Error {
        case let .io(_, code)?, let .writeFailed(code, _)?, let .openFailed(_, code)?: return code
        case .readOnly?: return EROFS
        case .requestOutOfRange?: return EINVAL
        default: return EIO
        }
    }

    /// What QEMU puts in BLOCK_JOB_COMPLETED's `error`: strerror of the errno.
    public var description: String { String(cString: strerror(errorNumber)) }
}

extension BlockJobIOFailure {
    /// Runs `body`, any error it throws becoming a failure of `operation`.
    static func catching<T>(_ operation: Operation, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw BlockJobIOFailure(operation, error)
        }
    }
}
