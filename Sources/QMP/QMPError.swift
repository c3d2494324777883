// A command's failure as QMP reports it: one of QEMU's error classes and a
// human-readable description (qapi/error.h's ErrorClass).
import BlockGraph
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

extension QMPError {
    /// Any failure of a command as QMP reports it: QMP errors as they are,
    /// the block layer's with the class QEMU gives them, the rest generic.
    init(reporting error: Error) {
        switch error {
        case let error as QMPError: self = error
        case let error as BlockGraphError:
            self = QMPError(error.isDeviceNotFound ? .deviceNotFound : .genericError, error.message)
        case let error as JobVerbRefused: self = .generic(error.description)
        case let error as JobError: self = .generic(error.description)
        default: self = .generic(String(describing: error))
        }
        // QEMU keeps hints (a lock conflict's "Is another process using the
        // image [...]?") out of QMP replies.
        let hint = "\nIs another process using the image ["
        if let start = desc.indices.first(where: { desc[$0...].hasPrefix(hint) }) { desc = String(desc[..<start]) }
    }
}
