// Reading the small files of a credentials directory, with GLib's messages
// (QEMU reads them through g_file_get_contents).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum PEMFile {
    /// Credential files are a few KiB; anything past this is not one, and is
    /// refused rather than read into memory.
    static let maxSize = 1 << 20

    static func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TLSError("Failed to open file “\(path)”: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw TLSError("Error reading file “\(path)”: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
            if bytes.count > maxSize { throw TLSError("File “\(path)” is too large") }
        }
    }
}

/// keys.psk: one `username:hexkey` per line (GnuTLS's psktool writes it).
enum PSKFile {
    /// The key of `username` as written (hex), as QEMU's client looks it up.
    static func key(for username: String, in path: String) throws -> String {
        let contents: [UInt8]
        do { contents = try PEMFile.read(path) } catch let error as TLSError {
            throw TLSError("Cannot read PSK file \(path): \(error.message)")
        }
        let prefix = Array(username.utf8) + [UInt8(ascii: ":")]
        for line in contents.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        where line.starts(with: prefix) {
            return String(decoding: line.dropFirst(prefix.count), as: UTF8.self)
        }
        throw TLSError("Username \(username) not found in PSK file \(path)")
    }
}
