// Which backing names a fuzzed image may follow. The library opens whatever a
// header names (that is what it is tested for), but a fuzzer that guessed
// "/dev/watchdog" or a FIFO would stall or harm the machine, and names of
// ordinary files elsewhere add nothing the second fuzzed file does not. So an
// input is run only if each backing name it can reach resolves into the
// scratch directory or names nothing at all.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
@testable import Qcow2

public enum BackingNames {
    /// The backing name the library would follow from an image file holding
    /// `bytes` (nil when it would open no backing): the same decode and
    /// validation `Qcow2Image` runs, in memory.
    public static func backingName(of bytes: [UInt8]) -> String? {
        guard let header = try? Qcow2Header.decode(bytes) else { return nil }
        let firstCluster = Array(bytes.prefix(Int(min(header.clusterSize, UInt64(bytes.count)))))
        guard let layout = try? HeaderValidation.validate(
            header: header, firstCluster: firstCluster, fileSize: UInt64(bytes.count), writable: false),
              let name = layout.backingFileName, !name.isEmpty else { return nil }
        return name
    }

    /// Whether following `name` from an image in `directory` stays inside it.
    /// Both readings of the name are checked: joined to the image's directory
    /// (the open path), and as it stands, relative to the working directory
    /// (how `qemu-img info` takes a name with a colon before any slash).
    public static func isContained(_ name: String, in directory: String) -> Bool {
        if BackingReference.isPseudoProtocol(name) { return true }   // refused by the library
        guard let base = realpath(directory, nil) else { return false }
        defer { free(base) }
        let prefix = String(cString: base) + "/"
        for candidate in [BackingReference.resolve(name, relativeTo: directory + "/image"), name] {
            guard let real = realpath(candidate, nil) else { continue }   // nothing there to open
            defer { free(real) }
            if !String(cString: real).hasPrefix(prefix) { return false }
        }
        return true
    }

    /// Whether every file of `files` (raw bytes of images that will sit in
    /// `directory`) names only backings that `isContained` allows.
    public static func allContained(_ files: [[UInt8]], in directory: String) -> Bool {
        files.allSatisfy { bytes in backingName(of: bytes).map { isContained($0, in: directory) } ?? true }
    }
}
