// Writing a whole guest disk (through its backing chain) into a sparse raw
// file, as `qemu-img convert -O raw` does: the file gets exactly the virtual
// size, and ConvertCopy leaves ranges the chain reports as zero, and blocks
// of read data that turn out to be all zeroes, as holes.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes a guest disk to a sparse raw file (`qemu-img convert -O raw`).
public enum RawExport {
    /// Builds the codec's `Qcow2Error.export` failures.
    package enum Failure {
        static func create(path: String, errno: Int32) -> Qcow2Error { .export(.create(path: path, errno: errno)) }
        static func outputIsSource(path: String) -> Qcow2Error { .export(.outputIsSource(path: path)) }
        static func read(offset: UInt64, error: Error) -> Qcow2Error { .export(.read(offset: offset, reason: "\(error)")) }
        static func write(offset: UInt64, error: Error) -> Qcow2Error { .export(.write(offset: offset, reason: "\(error)")) }
    }

    /// Writes `image`'s guest data to a new (or truncated) raw file at `path`.
    /// Throws `Qcow2Error.export` (creating, reading, writing) in qemu-img
    /// convert's words.
    public static func write(_ image: BlockImage, to path: String) throws {
        try refuseOutputInChain(image, path: path)
        do {
            try RawCreator.create(path: path, size: image.size, replacing: true)
        } catch let Qcow2Error.creation(.couldNotCreate(_, code)) {
            throw Failure.create(path: path, errno: code)
        }
        let output = try ConvertTarget.open(path: path, format: .raw, cache: .unsafe)
        var settings = ConvertSettings()
        try ConvertTarget.prepare(&settings, for: output, isNew: true)
        try ConvertTarget.finish(output) {
            try ConvertCopy(sources: ConvertSources([image]), target: output, settings: settings).run()
        }
    }

    /// Refuses an output path that names a file of the source's chain:
    /// creating the output would truncate it before it is read.
    package static func refuseOutputInChain(_ image: BlockImage, path: String) throws {
        guard let existing = try? BlockFile(path: path, writable: false) else { return }
        let target = try? existing.identity()
        try? existing.close()
        if let target, image.chain.contains(where: { (try? $0.hostFileIdentity()) == target }) {
            throw Failure.outputIsSource(path: path)
        }
    }
}

extension Qcow2Error {
    /// Why `RawExport` or `Qcow2Export` could not write its output, in
    /// qemu-img convert's words. Carried by `Qcow2Error.export`.
    public enum Export: Equatable, Sendable, CustomStringConvertible {
        /// The output file could not be created.
        case create(path: String, errno: Int32)
        /// The output path names a file of the source's own chain, which
        /// creating the output would truncate before it is read.
        case outputIsSource(path: String)
        /// Reading the source failed at guest offset `offset`; `reason` is the error's message.
        case read(offset: UInt64, reason: String)
        /// Writing the output failed at `offset`; `reason` is the error's message.
        case write(offset: UInt64, reason: String)
        /// The source's block status could not be read at `offset` (of the
        /// source image that failed); `reason` is the error's message.
        case blockStatus(offset: UInt64, reason: String)

        /// The message qemu-img convert prints.
        public var description: String {
            switch self {
            case let .create(path, code): return "Could not create '\(path)': \(String(cString: strerror(code)))"
            case let .outputIsSource(path): return "Could not create '\(path)': it is an image of the source's backing chain"
            case let .read(offset, reason): return "error while reading at byte \(offset): \(reason)"
            case let .write(offset, reason): return "error while writing at byte \(offset): \(reason)"
            case let .blockStatus(offset, reason): return "error while reading block status at offset \(offset): \(reason)"
            }
        }
    }
}
