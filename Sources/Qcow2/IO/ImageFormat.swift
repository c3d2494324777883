// The image formats QcowKit opens, and probing: qcow2 by its magic, anything
// else raw. Probing is only for images whose format nobody named.

/// The image formats QcowKit reads and writes.
public enum ImageFormat: String, Sendable, CaseIterable {
    case qcow2
    case raw

    /// Parses a format name as given to -f / -F / backing_fmt.
    /// Throws `Qcow2Error.backingFormatUnknown` for other names.
    public init(name: String) throws {
        guard let format = ImageFormat(rawValue: name) else {
            throw Qcow2Error.backingFormatUnknown(name)
        }
        self = format
    }

    /// QEMU's choice for an unnamed format: qcow2 when the file starts with
    /// the magic and a version of at least 2 (bytes past the end read as 0),
    /// raw otherwise (an empty file included).
    package static func probe(_ file: BlockFile) throws -> ImageFormat {
        var head = [UInt8](repeating: 0, count: 8)
        let got = try head.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        let isQcow2 = got >= 4 && head.be(UInt32.self, at: 0) == Qcow2Header.magic && head.be(UInt32.self, at: 4) >= 2
        return isQcow2 ? .qcow2 : .raw
    }
}
