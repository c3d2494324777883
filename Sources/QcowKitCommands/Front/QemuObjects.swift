// qemu-img's --object (user_creatable_process_cmdline): QOM objects made
// from keyval text whose implied key is qom-type, checked as QEMU checks them
// (qom-type, id, the type's members, then the object's own checks). QcowKit
// has no encryption, so a `secret` is checked and then unused; the other
// object types qemu-img 7.2 can create (TLS credentials, throttle groups,
// authz lists, ...) are refused by name, and any other type gets QEMU's
// answer for it.
import ArgumentParser
import QemuJSON
import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct QemuObjects {
    /// The types qemu-img 7.2 lists for `--object help`, in its order.
    static let creatable = [
        "authz-list", "authz-list-file", "authz-simple", "main-loop", "pr-manager-helper", "secret",
        "secret_keyring", "thread-context", "throttle-group", "tls-cipher-suites", "tls-creds-anon",
        "tls-creds-psk", "tls-creds-x509",
    ]

    /// QAPI's ObjectType in 7.2 (qapi/qom.json, the list object-add reads
    /// with): a type there that qemu-img cannot create is an "invalid object
    /// type"; one not there is not a qom-type at all.
    static let objectTypes = Set(UserObjectOptions.qemuTypes)

    /// `secret`'s members in the schema's order (SecretCommonProperties, then
    /// SecretProperties), for `secret,help`.
    static let secretMembers = [("data", "string"), ("file", "string"), ("format", "QCryptoSecretFormat"),
                                ("iv", "string"), ("keyid", "string")]

    /// The IDs made so far: a second object with one is refused.
    private var ids: Set<String> = []

    enum Outcome: Equatable {
        case added
        /// Help was printed: the program ends with status 0.
        case helpShown
    }

    /// Makes the object `text` describes. Throws its failure as qemu-img
    /// words it (the caller reports it and exits).
    mutating func add(_ text: String) throws(ObjectFailure) -> Outcome {
        let elements = text.split(separator: ",", omittingEmptySubsequences: false)
        if elements.first == "help" || elements.first == "?" {
            Terminal.print("List of user creatable objects:")
            for type in Self.creatable { Terminal.print("  \(type)") }
            return .helpShown
        }
        let tree: [(String, JSONValue)]
        do {
            guard case let .object(members) = try Keyval.parse(text, impliedKey: "qom-type") else { return .added }
            tree = members
        } catch {
            if elements.dropFirst().contains(where: { $0 == "help" || $0 == "?" }), let type = elements.first {
                return try showHelp(String(type))
            }
            throw ObjectFailure("\(error)")
        }
        func string(_ key: String) -> String? {
            if case let .string(value)? = tree.last(where: { $0.0 == key })?.1 { return value }
            return nil
        }
        guard let type = string("qom-type") else { throw ObjectFailure("Parameter 'qom-type' is missing") }
        guard Self.objectTypes.contains(type) || Self.creatable.contains(type) else {
            throw ObjectFailure("Parameter 'qom-type' does not accept value '\(type)'")
        }
        guard let id = string("id") else { throw ObjectFailure("Parameter 'id' is missing") }
        guard Self.creatable.contains(type) else { throw ObjectFailure("invalid object type: \(type)") }
        guard type == "secret" else {
            throw ObjectFailure("object type '\(type)' is not supported by qcowkit")
        }
        try Self.checkSecret(tree, string: string)
        guard ids.insert(id).inserted else {
            throw ObjectFailure("attempt to add duplicate property '\(id)' to object (type 'container')")
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

    /// The secret's members (QAPI's checks, then unexpected ones), then the
    /// object's own checks (qcrypto_secret_load_data).
    private static func checkSecret(_ tree: [(String, JSONValue)], string: (String) -> String?) throws(ObjectFailure) {
        if let loaded = string("loaded"), !["on", "off", "true", "false", "yes", "no", "y", "n"].contains(loaded) {
            throw ObjectFailure("Parameter 'loaded' expects 'on' or 'off'")
        }
        if let format = string("format"), format != "raw", format != "base64" {
            throw ObjectFailure("Parameter 'format' does not accept value '\(format)'")
        }
        let known: Set<String> = ["qom-type", "id", "loaded", "format", "keyid", "iv", "data", "file"]
        if let (name, _) = QDictOrder.ordered(tree).first(where: { !known.contains($0.0) }) {
            throw ObjectFailure("Parameter '\(name)' is unexpected")
        }
        let data = string("data"), file = string("file")
        if data != nil && file != nil { throw ObjectFailure("'file' and 'data' are mutually exclusive") }
        guard data != nil || file != nil else { throw ObjectFailure("Either 'file' or 'data' must be provided") }
        if let file {
            // Read as g_file_get_contents would: its message on failure.
            guard let handle = fopen(file, "rb") else {
                let reason = String(cString: strerror(errno))
                throw ObjectFailure("Unable to read \(file): Failed to open file \u{201C}\(file)\u{201D}: \(reason)")
            }
            fclose(handle)
        }
    }
}

struct ObjectFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// --object for the verbs ArgumentParser parses: VerbGetopt has made and
/// checked the objects before, so here the values are only taken.
struct ObjectOptions: ParsableArguments {
    @Option(name: .customLong("object"), help: "A QOM object (qom-type=secret,id=ID,data=...|file=PATH); other types are refused.")
    var objects: [String] = []
}
