// The objects created by --object and object-add (QEMU's /objects
// container): ids are unique and credentials are loaded when created.
// Deleting credentials a running NBD server uses succeeds, as in QEMU 7.2:
// the server keeps its reference.
import TLS

public final class UserObjects: @unchecked Sendable {
    // @unchecked: used on one thread only (the QMP main loop, or qemu-nbd's
    // start-up before any server thread); the loaded credentials it hands
    // out are Sendable.
    private var objects: [(id: String, credentials: TLSCredentials)] = []

    public init() {}

    /// Creates the object (loading credentials) under a new id.
    @discardableResult
    public func add(_ options: UserObjectOptions) throws -> TLSCredentials {
        guard !objects.contains(where: { $0.id == options.id }) else {
            throw QMPError.generic("attempt to add duplicate property '\(options.id)' to object (type 'container')")
        }
        switch options.kind {
        case let .tlsCredentials(tls):
            let credentials: TLSCredentials
            do { credentials = try TLSCredentials(tls) } catch let error as TLSError {
                throw QMPError.generic(error.message)
            }
            objects.append((options.id, credentials))
            return credentials
        }
    }

    /// --object's text, parsed and created.
    public func add(commandLine text: String) throws {
        try add(try UserObjectOptionsInput.parse(commandLine: text))
    }

    public func delete(id: String) throws {
        guard let index = objects.firstIndex(where: { $0.id == id }) else {
            throw QMPError.generic("object '\(id)' not found")
        }
        objects.remove(at: index)
    }

    /// TLS credentials by id for the given endpoint, in the words of
    /// nbd_get_tls_creds / nbd-server-start.
    public func tlsCredentials(id: String, endpoint: TLSEndpoint) throws -> TLSCredentials {
        guard let credentials = objects.first(where: { $0.id == id })?.credentials else {
            throw QMPError.generic("No TLS credentials with id '\(id)'")
        }
        do { try credentials.check(endpoint: endpoint) } catch let error as TLSError {
            throw QMPError.generic(error.message)
        }
        return credentials
    }
}
