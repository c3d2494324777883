// Finding a node of a backing chain by file name, as block-commit's `top`
// and `base` name them (QEMU's bdrv_find_backing_image), with the codec's
// test (BackingReference.matches). Where an overlay's backing is not the one
// its header names, only the backing node's file name matches.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

extension BlockGraph {
    /// The node below `top` (not `top` itself) that `name` names, if any.
    func findBackingImage(below top: BlockNode, named name: String) -> BlockNode? {
        var current = top
        while let below = current.backing {
            defer { current = below }
            let stored = current.qcow2?.backingFileName.map { String($0.unicodeScalars.prefix { $0 != "\0" }) } ?? ""
            if current.backingOverridden {
                if name == below.filename { return below }
            } else if BackingReference.matches(name, stored: stored, overlayPath: current.filename) {
                return below
            }
        }
        return nil
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
