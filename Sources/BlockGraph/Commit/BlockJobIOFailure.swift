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

extension JobRunContext {
    /// Runs one step of a job's copying; on an I/O failure asks the on-error
    /// policy: `report` throws, `ignore` and `stop` return false (the caller
    /// retries the step after its next pause point, as QEMU's jobs do).
    func attempt(_ step: () throws -> Void) throws -> Bool {
        do {
            try step()
            return true
        } catch let failure as BlockJobIOFailure {
            switch errorAction(isRead: failure.operation == .read, errorNumber: failure.errorNumber) {
            case .report: throw failure
            case .ignore, .stop: return false
            }
        }
    }
}
