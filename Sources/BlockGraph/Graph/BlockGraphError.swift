// A refused graph operation, worded as QEMU words it, and whether QMP
// reports it with the DeviceNotFound class (QEMU's ERROR_CLASS_DEVICE_NOT_FOUND)
// rather than GenericError.

public struct BlockGraphError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String
    public var isDeviceNotFound: Bool

    public init(_ message: String, isDeviceNotFound: Bool = false) {
        self.message = message
        self.isDeviceNotFound = isDeviceNotFound
    }

    public var description: String { message }

    static func deviceNotFound(_ device: String) -> BlockGraphError {
        BlockGraphError("Device '\(device)' not found", isDeviceNotFound: true)
    }
}
