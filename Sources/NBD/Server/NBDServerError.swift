// Errors of the server's management API, worded as QEMU words them for the
// same QMP commands (nbd-server-start, block-export-add/-del).

/// Why a server could not listen, or an export could not be added or removed.
public struct NBDServerError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }

    static func duplicateExport(_ name: String) -> Self { Self("NBD server already has export named '\(name)'") }
    static func nameTooLong(_ name: String) -> Self { Self("export name '\(name)' too long") }
    static func descriptionTooLong(_ text: String) -> Self { Self("description '\(text)' too long") }
    static func noExport(_ name: String) -> Self { Self("Export '\(name)' is not found") }
    static func exportInUse(_ name: String) -> Self { Self("export '\(name)' still in use") }
    static let stopped = Self("NBD server not running")
}
