// Creating qcow2 images: the public entry point. The file is created first,
// then the options are checked, and a failure after that removes the file,
// as QEMU 7.2 does.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum Qcow2Creator {
    /// Creates (or replaces) `path` with a new qcow2 image, byte for byte what
    /// `qemu-img create -f qcow2` writes for the same options. The size is
    /// rounded up to a multiple of 512 bytes.
    public static func create(path: String, options: Qcow2CreateOptions) throws {
        let file = try createFile(path: path)
        do {
            try options.validate()
            var options = options
            options.size = (options.size &+ 511) & ~UInt64(511)
            let builder = try Qcow2Builder(file: file, options: options)
            do {
                try builder.resize(to: options.size)
            } catch let Qcow2Error.io(step, code) where code != EFBIG {
                throw Qcow2CreateError.couldNotResize(reason: "\(step): \(errnoDescription(code))")
            }
            try builder.finish()
            try file.flush()
            try file.close()
        } catch {
            try? file.close()
            unlink(path)
            throw translate(error)
        }
    }

    /// What QEMU leaves when options are refused after the file was created:
    /// nothing. Creates `path` (so that creation errors come first) and
    /// removes it again.
    public static func abandon(path: String) throws {
        let file = try createFile(path: path)
        try? file.close()
        unlink(path)
    }

    private static func createFile(path: String) throws -> BlockFile {
        do {
            return try BlockFile.create(path: path)
        } catch let Qcow2Error.io(_, code) {
            throw Qcow2CreateError.couldNotCreate(path: path, errno: code)
        }
    }

    /// EFBIG from anywhere reads as "image too large", as qemu-img reports it.
    private static func translate(_ error: Error) -> Error {
        switch error {
        case is FileTooLarge, Qcow2Error.io(_, EFBIG):
            return Qcow2CreateError.imageTooLarge(format: "qcow2", clusterSizeHint: true)
        case let error as Qcow2CreateError where error.isFileTooLarge:
            return Qcow2CreateError.imageTooLarge(format: "qcow2", clusterSizeHint: true)
        default:
            return error
        }
    }
}
