// Opening an image with its backing chain. Backing names are untrusted input
// (an image may come from anywhere), so the chain is refused when a name is
// a pseudo-protocol ("json:...", "nbd://..."), when it loops back to a file
// already in the chain, or when it is deeper than `Qcow2Limits.maxBackingChainDepth`.
// Errors nest like QEMU's: each layer adds "Could not open backing file: ".

public enum ImageOpener {
    /// Opens `path` as `format` (probed when nil) and attaches its backing
    /// chain. Only the top image can be writable; backings open read-only.
    public static func open(path: String, format: ImageFormat? = nil, writable: Bool = false) throws -> BlockImage {
        var chain = Set<FileIdentity>()
        return try openLayer(path: path, format: format, writable: writable, depth: 0, chain: &chain)
    }

    /// What qemu-img prints when opening `path` failed with `error`.
    public static func failureMessage(path: String, error: Error) -> String {
        "Could not open '\(path)': \(error)"
    }

    private static func openLayer(
        path: String, format: ImageFormat?, writable: Bool, depth: Int, chain: inout Set<FileIdentity>
    ) throws -> BlockImage {
        let file: BlockFile
        do {
            file = try BlockFile(path: path, writable: writable)
        } catch let Qcow2Error.io(_, code) {
            throw Qcow2Error.openFailed(path: path, errno: code)
        }
        var opened = false
        defer { if !opened { try? file.close() } }

        // Same device and inode as a layer above: the chain loops (this also
        // catches an image that names itself, under any path).
        guard chain.insert(try file.identity()).inserted else { throw Qcow2Error.backingChainLoop(path: path) }

        let image: BlockImage
        switch try format ?? ImageFormat.probe(file) {
        case .raw:
            image = try RawImage(file: file)
        case .qcow2:
            let qcow2 = try Qcow2Image(file: file)
            if let name = qcow2.backingFileName, !name.isEmpty {
                do {
                    qcow2.backing = try openBacking(named: name, format: qcow2.backingFormat, overlayPath: path,
                                                    depth: depth + 1, chain: &chain)
                } catch let error as Qcow2Error {
                    switch error {
                    case .backingChainLoop, .backingChainTooDeep: throw error   // about the whole chain
                    default: throw Qcow2Error.inBackingFile(error)
                    }
                }
            }
            image = qcow2
        }
        opened = true
        return image
    }

    private static func openBacking(
        named name: String, format: String?, overlayPath: String, depth: Int, chain: inout Set<FileIdentity>
    ) throws -> BlockImage {
        guard !BackingReference.isPseudoProtocol(name) else { throw Qcow2Error.pseudoProtocolBackingRefused(name) }
        guard depth <= Qcow2Limits.maxBackingChainDepth else {
            throw Qcow2Error.backingChainTooDeep(limit: Qcow2Limits.maxBackingChainDepth)
        }
        // The header's backing format is used as given; only without one is
        // the backing probed.
        let backingFormat = try format.map { try ImageFormat(name: $0) }
        return try openLayer(path: BackingReference.resolve(name, relativeTo: overlayPath),
                             format: backingFormat, writable: false, depth: depth, chain: &chain)
    }
}
