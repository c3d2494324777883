// Raw images, and growing a host file with preallocation, as QEMU 7.2's
// file-posix driver does it (raw_co_create, handle_aiocb_truncate).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum RawPreallocation {
    /// QEMU's MAX_BLOCKSIZE: the most it writes when it allocates a new
    /// file's first block (so that later alignment probing finds data).
    static let firstBlockSize = 4096
    /// Zeroes are written in chunks of this size for preallocation=full.
    static let zeroChunk = 65536

    /// Grows `file` to `length` (never shrinks, as the callers ask).
    /// `off` truncates; `falloc` allocates the new part; `full` writes it.
    static func grow(file: BlockFile, to length: UInt64, mode: Preallocation) throws {
        guard length <= UInt64(Int64.max) else { throw Qcow2Error.creation(.couldNotResizeFile(errno: EINVAL)) }
        let current = try file.size()
        switch mode {
        case .off:
            try truncate(file, to: length)
            if current == 0 && length > 0 { allocateFirstBlock(file, size: length) }
        case .falloc:
            guard length != current else { return }
            try failing(Qcow2Error.Creation.couldNotPreallocate) { try file.allocate(offset: current, length: length - current) }
            if current == 0 { allocateFirstBlock(file, size: length) }
        case .full:
            try truncate(file, to: length)
            let zeroes = [UInt8](repeating: 0, count: zeroChunk)
            var offset = current
            while offset < length {
                let n = Int(min(UInt64(zeroChunk), length - offset))
                try failing(Qcow2Error.Creation.couldNotWriteZeros) {
                    try zeroes.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[..<n]), at: offset) }
                }
                offset += UInt64(n)
            }
            try failing(Qcow2Error.Creation.couldNotResizeFile) { try file.sync() }
        case .metadata:
            throw Qcow2Error.creation(.unsupportedPreallocation(.metadata))
        }
    }

    /// Sets the file's length (ftruncate), failing as "Could not resize file".
    static func truncate(_ file: BlockFile, to length: UInt64) throws {
        try failing(Qcow2Error.Creation.couldNotResizeFile) { try file.truncate(to: length) }
    }

    /// allocate_first_block: one sector of zeroes, or 4 KiB for files at
    /// least that long. Failures are ignored, as QEMU ignores them.
    private static func allocateFirstBlock(_ file: BlockFile, size: UInt64) {
        let count = size < UInt64(firstBlockSize) ? 512 : firstBlockSize
        try? file.write([UInt8](repeating: 0, count: count), at: 0)
    }

    /// Runs a host file operation, its errno reported as `error`.
    private static func failing(_ error: (Int32) -> Qcow2Error.Creation, _ body: () throws -> Void) throws {
        do { try body() } catch let Qcow2Error.io(_, code) { throw Qcow2Error.creation(error(code)) }
    }
}

/// Creates raw images as `qemu-img create -f raw` does.
public enum RawCreator {
    /// Creates `path` and gives it `size` bytes, rounded up to a multiple of
    /// 512. An existing file is refused (`Qcow2Error.Creation.fileExists`)
    /// unless `replacing` is true, in which case it is truncated first, as
    /// qemu-img does. `metadata` preallocation is refused after the file
    /// was created, as QEMU does.
    /// Throws `Qcow2Error.creation` with qemu-img's reason.
    public static func create(path: String, size: UInt64, preallocation: Preallocation = .off, replacing: Bool = false) throws {
        let file = try Qcow2Creator.createFile(path: path, replacing: replacing)
        defer { try? file.close() }
        let length = (size &+ 511) & ~UInt64(511)
        do {
            // ROUND_UP on a signed size: past INT64_MAX the length is negative.
            guard length <= UInt64(Int64.max) else { throw Qcow2Error.creation(.couldNotResizeFile(errno: EINVAL)) }
            try RawPreallocation.grow(file: file, to: length, mode: preallocation)
        } catch let Qcow2Error.creation(error) where error.isFileTooLarge {
            throw Qcow2Error.creation(.imageTooLarge(format: "raw", clusterSizeHint: false))
        }
    }
}
