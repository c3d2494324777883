// Finding a node of a backing chain by file name, as block-commit's `top`
// and `base` name them (QEMU's bdrv_find_backing_image): each overlay's
// stored backing name and the name asked for are both resolved against the
// overlay's own file name and compared as real paths, so a relative name
// works as the overlay's header would use it. Where an overlay's backing is
// not the one its header names, only the backing node's file name matches.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

extension BlockGraph {
    /// The node below `top` (not `top` itself) that `name` names, if any.
    func findBackingImage(below top: BlockNode, named name: String) -> BlockNode? {
        let nameIsProtocol = Self.hasProtocol(name)
        var current = top
        while let below = current.backing {
            defer { current = below }
            let stored = current.qcow2?.backingFileName.map { String($0.unicodeScalars.prefix { $0 != "\0" }) } ?? ""
            if current.backingOverridden {
                if name == below.filename { return below }
            } else if nameIsProtocol || Self.hasProtocol(stored) {
                if name == stored { return below }
            } else if let wanted = Self.realPath(BackingReference.resolve(name, relativeTo: current.filename)),
                      let actual = Self.realPath(BackingReference.resolve(stored, relativeTo: current.filename)),
                      wanted == actual {
                return below
            }
        }
        return nil
    }

    /// QEMU's path_has_protocol: a colon before any slash.
    static func hasProtocol(_ name: String) -> Bool {
        guard let colon = name.firstIndex(of: ":") else { return false }
        return !name[..<colon].contains("/")
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// QEMU's bdrv_chain_contains: `node` is `top` or below it.
    func chain(of top: BlockNode, contains node: BlockNode) -> Bool {
        var current: BlockNode? = top
        while let layer = current {
            if layer === node { return true }
            current = layer.backing
        }
        return false
    }
}
