// Opening an image with its backing chain, as the reading and writing verbs
// do; how the chain is followed (and refused) is `BackingChain`'s.

/// Opens images with their backing chains: the entry point for reading and
/// writing images.
public enum ImageOpener {
    /// Opens `path` as `format` (probed when nil) and attaches its backing
    /// chain. Only the top image can be writable; backings open read-only.
    /// Throws `Qcow2Error`: the top image's open failure, or one nested in
    /// `inBackingFile` per backing link (QEMU's "Could not open backing file").
    public static func open(path: String, format: ImageFormat? = nil, writable: Bool = false) throws -> BlockImage {
        try BackingChain.open(path: path, format: format, writable: writable, at: .top)
    }

    /// Opens the file of an image; a failure reads like QEMU's file driver's
    /// ("Could not open 'x': No such file or directory").
    package static func openFile(path: String, writable: Bool) throws -> BlockFile {
        do {
            return try BlockFile(path: path, writable: writable)
        } catch let Qcow2Error.io(_, code) {
            throw Qcow2Error.openFailed(path: path, errno: code)
        }
    }

    /// What qemu-img prints when opening `path` failed with `error`.
    package static func failureMessage(path: String, error: Error) -> String {
        "Could not open '\(path)': \(error)"
    }
}
