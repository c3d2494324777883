// A command's failure as QMP reports it: one of QEMU's error classes and a
// human-readable description (qapi/error.h's ErrorClass).
import QemuJSON

public enum QMPErrorClass: String, Sendable {
    case genericError = "GenericError"
    case commandNotFound = "CommandNotFound"
    case deviceNotActive = "DeviceNotActive"
    case deviceNotFound = "DeviceNotFound"
    case kvmMissingCap = "KVMMissingCap"
}

public struct QMPError: Error, Equatable, CustomStringConvertible, Sendable {
    public var errorClass: QMPErrorClass
    public var desc: String

    public init(_ errorClass: QMPErrorClass = .genericError, _ desc: String) {
        self.errorClass = errorClass
        self.desc = desc
    }

    public static func generic(_ desc: String) -> QMPError { QMPError(.genericError, desc) }

    public var description: String { desc }

    /// The `error` member of the reply: class before desc, as QEMU builds it.
    public var json: JSONValue {
        .object([("class", .string(errorClass.rawValue)), ("desc", .string(desc))])
    }
}
