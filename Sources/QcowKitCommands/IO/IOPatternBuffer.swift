// The data qemu-io writes: a buffer of one repeated byte (0xcd unless -P
// names another), or with `write -s FILE` the file's bytes, repeated from
// its start as often as needed to fill the request.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum IOPatternBuffer {
    static let defaultWriteByte: UInt8 = 0xcd

    static func filled(with byte: UInt8, count: Int) -> [UInt8] {
        [UInt8](repeating: byte, count: count)
    }

    /// `count` bytes taken from the start of `path` and repeated; nil after
    /// printing qemu-io's message ("FILE: reason" or "FILE: file is empty")
    /// if the file cannot be read or is empty.
    static func fromFile(_ path: String, count: Int, console: IOConsole) -> [UInt8]? {
        guard let file = fopen(path, "r") else {
            console.err("\(path): \(String(cString: strerror(errno)))")
            return nil
        }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: count)
        let got = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, count, file) }
        if ferror(file) != 0 {
            console.err("\(path): \(String(cString: strerror(errno)))")
            return nil
        }
        // Even a zero-length request needs a non-empty file, as in qemu-io.
        guard got > 0 else {
            console.err("\(path): file is empty")
            return nil
        }
        var filled = got
        while filled < count {
            let n = min(got, count - filled)
            buffer.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                (base + filled).copyMemory(from: UnsafeRawPointer(base), byteCount: n)
            }
            filled += n
        }
        return buffer
    }
}
