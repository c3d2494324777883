// One error for credentials and sessions; its message is QEMU's wording
// (crypto/tlscreds*.c, crypto/tlssession.c) so the CLI and QMP can show it as is.
public struct TLSError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String
    /// A blocking socket's receive or send timeout ran out (SO_RCVTIMEO,
    /// SO_SNDTIMEO): the peer stalled, as opposed to a protocol failure.
    public var isTimeout: Bool

    public init(_ message: String, isTimeout: Bool = false) {
        self.message = message
        self.isTimeout = isTimeout
    }

    public var description: String { message }
}
