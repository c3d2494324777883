// qemu-img's --object (user_creatable_process_cmdline): its `help` listings,
// and the types qemu-img can create; the objects themselves are read and
// made by QMP's one registry (UserObjects), as for serve and `qcowkit nbd`:
// a `secret` is checked and then unused (QcowKit has no encryption), TLS
// credentials are loaded, and the other types qemu-img 7.2 can create
// (throttle groups, authz lists, ...) are refused by name.
import QMP

struct QemuObjects {
    /// The types qemu-img 7.2 lists for `--object help`, in its order.
    static let creatable = [
        "authz-list", "authz-list-file", "authz-simple", "main-loop", "pr-manager-helper", "secret",
        "secret_keyring", "thread-context", "throttle-group", "tls-cipher-suites", "tls-creds-anon",
        "tls-creds-psk", "tls-creds-x509",
    ]

    /// `secret`'s members in the schema's order (SecretCommonProperties, then
    /// SecretProperties), for `secret,help`.
    static let secretMembers = [("data", "string"), ("file", "string"), ("format", "QCryptoSecretFormat"),
                                ("iv", "string"), ("keyid", "string")]

    /// The objects made so far: QMP's one registry of user objects, which
    /// checks and creates them for serve, `qcowkit nbd` and object-add too.
    private let registry = UserObjects()

    enum Outcome: Equatable {
        case added
        /// Help was printed: the program ends with status 0.
        case helpShown
    }

    /// Makes the object `text` describes. Throws its failure as qemu-img
    /// words it (the caller reports it and exits).
    func add(_ text: String) throws(ObjectFailure) -> Outcome {
        let elements = text.split(separator: ",", omittingEmptySubsequences: false)
        if elements.first == "help" || elements.first == "?" {
            Terminal.print("List of user creatable objects:")
            for type in Self.creatable { Terminal.print("  \(type)") }
            return .helpShown
        }
        // "TYPE,help" is not valid keyval: help is looked for first.
        if !text.hasPrefix("{"), elements.dropFirst().contains(where: { $0 == "help" || $0 == "?" }), let type = elements.first {
            return try showHelp(String(type))
        }
        do {
            try registry.add(commandLine: text, creatable: Self.creatable)
        } catch let error as QMPError {
            throw ObjectFailure(error.desc)
        } catch {
            throw ObjectFailure("\(error)")
        }
        return .added
    }

    private func showHelp(_ type: String) throws(ObjectFailure) -> Outcome {
        guard type == "secret" else {
            guard Self.creatable.contains(type) else { throw ObjectFailure("invalid object type: \(type)") }
            throw ObjectFailure("object type '\(type)' is not supported by qcowkit")
        }
        Terminal.print("secret options:")
        for (name, kind) in Self.secretMembers { Terminal.print("  \(name)=<\(kind)>") }
        return .helpShown
    }
}

struct ObjectFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
