// What the service says it is, in the greeting and in query-version. The
// QEMU version it reports is the QMP dialect it speaks (7.2's commands,
// messages and events); `package` names the implementation, as distributions
// put their package version there.
import QemuJSON

public struct QMPVersion: Sendable, Equatable {
    public var major: Int64
    public var minor: Int64
    public var micro: Int64
    public var package: String

    public init(major: Int64 = 7, minor: Int64 = 2, micro: Int64 = 0, package: String) {
        self.major = major
        self.minor = minor
        self.micro = micro
        self.package = package
    }

    /// query-version's VersionInfo, members put in schema order (major,
    /// minor, micro): "minor" and "micro" share a QDict bucket, so the order
    /// of insertion decides which prints first.
    var json: JSONValue {
        .object([
            ("qemu", .object([("major", .int(major)), ("minor", .int(minor)), ("micro", .int(micro))])),
            ("package", .string(package)),
        ])
    }

    /// The greeting a client gets on connecting: version, and the
    /// capabilities it may enable.
    var greeting: JSONValue {
        .object([("QMP", .object([("version", json), ("capabilities", .array([.string("oob")]))]))])
    }
}
