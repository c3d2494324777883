// A block job's data I/O failed: which side (QEMU's BLOCK_JOB_ERROR
// `operation`: reading the source or writing the target) and why. Thrown
// by a driver's `run`; the job layer reports it.

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

    public var description: String { "\(underlying)" }
}
