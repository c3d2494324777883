// The image formats QcowKit opens, and probing: qcow2 by its magic, anything
// else raw. Probing is only for images whose format nobody named.

public enum ImageFormat: String, Sendable, CaseIterable {
    case qcow2
    case raw

    /// Parses a format name as given to -f / -F / backing_fmt.
    public init(name: String) throws {
        guard let format = ImageFormat(rawValue: name) else {
            throw Qcow2Error.backingFormatUnknown(name)
        }
        self = format
    }

    /// QEMU's choice for an unnamed format: qcow2 when the file starts with
    /// the magic and a version of at least 2 (bytes past the end read as 0),
    /// raw otherwise (an empty file included).
    public static func probe(_ file: BlockFile) throws -> ImageFormat {
        var head = [UInt8](repeating: 0, count: 8)
        let got = try head.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        let isQcow2 = got >= 4 && head.be(UInt32.self, at: 0) == Qcow2Header.magic && head.be(UInt32.self, at: 4) >= 2
        return isQcow2 ? .qcow2 : .raw
    }
}

/// A backing file name as stored in an overlay, and how it is resolved.
public enum BackingReference {
    /// Resolves `name` as QEMU does: an absolute name as is, a relative name
    /// relative to the directory of the overlay's own path (as the overlay was
    /// opened, not the process's working directory).
    public static func resolve(_ name: String, relativeTo overlayPath: String) -> String {
        if name.hasPrefix("/") { return name }
        guard let slash = overlayPath.lastIndex(of: "/") else { return name }
        return String(overlayPath[...slash]) + name
    }

    /// Names QEMU would interpret as a protocol or a JSON description
    /// ("json:{...}", "nbd://...", "file:..."): refused, since following them
    /// from an untrusted image is how backing-file attacks work.
    public static func isPseudoProtocol(_ name: String) -> Bool {
        if name.hasPrefix("json:") { return true }
        guard let colon = name.firstIndex(of: ":"), let slash = name.firstIndex(of: "/") ?? Optional(name.endIndex) else {
            return false
        }
        // "proto:..." before any slash is a protocol prefix, as QEMU parses it.
        let prefix = name[..<colon]
        return colon < slash && !prefix.isEmpty && prefix.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "+" || $0 == "." }
    }
}
