// QAPI's ObjectOptions (qapi/qom.json) for the object types QcowKit has, read
// from object-add's arguments or --object's keyval text: a union on
// `qom-type` with `id`, then the type's members in the schema's order
// (TlsCredsProperties, then the X.509 or PSK ones; SecretCommonProperties,
// then SecretProperties), so the first problem reported is QEMU's.
import QemuJSON
import TLS

public struct UserObjectOptions: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case tlsCredentials(TLSCredentialsOptions)
        /// A `secret`: QcowKit has no encryption, so it is checked (and its
        /// file read) as QEMU creates one, then unused.
        case secret(data: String?, file: String?)
    }

    public var id: String
    public var kind: Kind

    /// QEMU 7.2's `qom-type` values (qemu-img's --object checks them too).
    public static var qemuTypes: [String] { UserObjectOptionsInput.qemuTypes }

    /// --object's argument: JSON if it starts with '{', else keyval with
    /// `qom-type` implied. `creatable` narrows the types to those a program
    /// can make (qemu-img's list): another schema type is then an "invalid
    /// object type".
    public static func parse(commandLine text: String, creatable: [String]? = nil) throws -> UserObjectOptions {
        try UserObjectOptionsInput.parse(commandLine: text, creatable: creatable)
    }
}

enum UserObjectOptionsInput {
    /// QEMU 7.2's user-creatable types: the enum `qom-type` is checked
    /// against. Only the TLS credentials are implemented.
    static let qemuTypes = [
        "authz-list", "authz-listfile", "authz-pam", "authz-simple", "can-bus", "can-host-socketcan",
        "colo-compare", "cryptodev-backend", "cryptodev-backend-builtin", "cryptodev-vhost-user", "dbus-vmstate",
        "filter-buffer", "filter-dump", "filter-mirror", "filter-redirector", "filter-replay", "filter-rewriter",
        "input-barrier", "input-linux", "iothread", "main-loop", "memory-backend-epc", "memory-backend-file",
        "memory-backend-memfd", "memory-backend-ram", "pef-guest", "pr-manager-helper", "qtest", "rng-builtin",
        "rng-egd", "rng-random", "secret", "secret_keyring", "sev-guest", "thread-context", "s390-pv-guest",
        "throttle-group", "tls-creds-anon", "tls-creds-psk", "tls-creds-x509", "tls-cipher-suites",
        "x-remote-object", "x-vfio-user-server",
    ]

    static func decode(_ input: inout QAPIInput, creatable: [String]? = nil) throws -> UserObjectOptions {
        guard let type = try input.optionalEnum("qom-type", qemuTypes + (creatable ?? [])) else { throw input.missing("qom-type") }
        let id = try input.string("id")
        if let creatable, !creatable.contains(type) { throw QMPError.generic("invalid object type: \(type)") }
        let kind: TLSCredentialsOptions.Kind
        switch type {
        case "tls-creds-x509": kind = .x509
        case "tls-creds-psk": kind = .psk
        case "secret": return UserObjectOptions(id: id, kind: try decodeSecret(&input))
        default: throw QMPError.generic("object type '\(type)' is not supported by qcowkit")
        }
        var options = TLSCredentialsOptions(kind: kind)
        if let verify = try input.optionalBool("verify-peer") { options.verifyPeer = verify }
        options.dir = try input.optionalString("dir")
        if let endpoint = try input.optionalEnum("endpoint", TLSEndpoint.allCases.map(\.rawValue)) {
            options.endpoint = TLSEndpoint(rawValue: endpoint)!
        }
        options.priority = try input.optionalString("priority")
        // `loaded`: deprecated and without effect.
        _ = try input.optionalBool("loaded")
        switch kind {
        case .x509:
            if let check = try input.optionalBool("sanity-check") { options.sanityCheck = check }
            if try input.optionalString("passwordid") != nil {
                throw QMPError.generic("passwordid: 'secret' objects are not supported by qcowkit")
            }
        case .psk:
            options.username = try input.optionalString("username")
        }
        try input.finish()
        return UserObjectOptions(id: id, kind: .tlsCredentials(options))
    }

    /// SecretCommonProperties then SecretProperties.
    private static func decodeSecret(_ input: inout QAPIInput) throws -> UserObjectOptions.Kind {
        _ = try input.optionalBool("loaded")
        _ = try input.optionalEnum("format", ["raw", "base64"])
        _ = try input.optionalString("keyid")
        _ = try input.optionalString("iv")
        let data = try input.optionalString("data")
        let file = try input.optionalString("file")
        try input.finish()
        return .secret(data: data, file: file)
    }

    /// --object's argument: JSON if it starts with '{', else keyval with
    /// `qom-type` implied (user_creatable_process_cmdline).
    static func parse(commandLine text: String, creatable: [String]? = nil) throws -> UserObjectOptions {
        var input: QAPIInput
        if text.hasPrefix("{") {
            switch JSONValue.parse(text) {
            case let .failure(error): throw QMPError.generic(error.message)
            case let .success(.object(members)): input = QAPIInput(members)
            case .success: throw QMPError.generic("Invalid parameter type for 'null', expected: object")
            }
        } else {
            do {
                guard case let .object(members) = try Keyval.parse(text, impliedKey: "qom-type") else {
                    throw QMPError.generic("Invalid parameter ''")
                }
                input = QAPIInput(members, mode: .keyval)
            } catch let error as KeyvalError {
                throw QMPError.generic(error.message)
            }
        }
        return try decode(&input, creatable: creatable)
    }
}
