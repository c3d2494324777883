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

    /// qcow2 if the file starts with the qcow2 magic and a version of at
    /// least 2, raw otherwise, as QEMU probes (bytes past the end of a short
    /// file read as zeroes; version 0 and 1 files are not qcow2 to QEMU).
    public static func probe(_ file: BlockFile) throws -> ImageFormat {
        var head = [UInt8](repeating: 0, count: 8)
        try head.withUnsafeMutableBytes { _ = try file.read(into: $0, at: 0) }
        return head.be(UInt32.self, at: 0) == Qcow2Header.magic && head.be(UInt32.self, at: 4) >= 2 ? .qcow2 : .raw
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
