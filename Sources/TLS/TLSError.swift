// One error for credentials and sessions; its message is QEMU's wording
// (crypto/tlscreds*.c, crypto/tlssession.c) so the CLI and QMP can show it as is.
public struct TLSError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
