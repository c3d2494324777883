// The objects created by --object and object-add (QEMU's /objects
// container): ids are unique and credentials are loaded when created.
// Deleting credentials a running NBD server uses succeeds, as in QEMU 7.2:
// the server keeps its reference.
import TLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public final class UserObjects: @unchecked Sendable {
    // @unchecked: used on one thread only (the QMP main loop, or qemu-nbd's
    // start-up before any server thread); the loaded credentials it hands
    // out are Sendable.
    /// nil for a secret (nothing here uses one).
    private var objects: [(id: String, credentials: TLSCredentials?)] = []

    public init() {}

    /// Creates the object (loading credentials) under a new id.
    @discardableResult
    public func add(_ options: UserObjectOptions) throws -> TLSCredentials? {
        switch options.kind {
        case let .tlsCredentials(tls):
            let credentials: TLSCredentials
            do { credentials = try TLSCredentials(tls) } catch let error as TLSError {
                throw QMPError.generic(error.message)
            }
            try insert(options.id, credentials)
            return credentials
        case let .secret(data, file):
            try Self.loadSecret(data: data, file: file)
            try insert(options.id, nil)
            return nil
        }
    }

    /// The object is complete (loaded) before it joins the container.
    private func insert(_ id: String, _ credentials: TLSCredentials?) throws {
        guard !objects.contains(where: { $0.id == id }) else {
            throw QMPError.generic("attempt to add duplicate property '\(id)' to object (type 'container')")
        }
        objects.append((id, credentials))
    }

    /// qcrypto_secret_load_data's checks; the file is read as
    /// g_file_get_contents reads it (its message on failure).
    private static func loadSecret(data: String?, file: String?) throws {
        if data != nil && file != nil { throw QMPError.generic("'file' and 'data' are mutually exclusive") }
        guard data != nil || file != nil else { throw QMPError.generic("Either 'file' or 'data' must be provided") }
        if let file {
            guard let handle = fopen(file, "rb") else {
                let reason = String(cString: strerror(errno))
                throw QMPError.generic("Unable to read \(file): Failed to open file \u{201C}\(file)\u{201D}: \(reason)")
            }
            fclose(handle)
        }
    }

    /// --object's text, parsed and created; `creatable` as
    /// UserObjectOptions.parse takes it.
    public func add(commandLine text: String, creatable: [String]? = nil) throws {
        try add(try UserObjectOptionsInput.parse(commandLine: text, creatable: creatable))
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
        guard let object = objects.first(where: { $0.id == id }) else {
            throw QMPError.generic("No TLS credentials with id '\(id)'")
        }
        guard let credentials = object.credentials else {
            throw QMPError.generic("Object with id '\(id)' is not TLS credentials")
        }
        do { try credentials.check(endpoint: endpoint) } catch let error as TLSError {
            throw QMPError.generic(error.message)
        }
        return credentials
    }
}
