// A failure to set the service up (command line, sockets, opening images),
// reported on stderr before or instead of serving.
public struct QMPServiceError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
