// Dirty bitmaps on the graph's nodes, for QMP's block-dirty-bitmap-*
// commands and query-named-block-nodes' `dirty-bitmaps`: QEMU 7.2's node
// lookups and messages (block_dirty_bitmap_lookup, bdrv_lookup_bs), then
// the codec's bitmap operations (Sources/Qcow2/Bitmaps). Bitmaps change in
// the qcow2 image of a writable node; elsewhere changes are refused by name.
import Qcow2

/// One bitmap as query-named-block-nodes lists it (BlockDirtyInfo).
public struct DirtyBitmapInfo: Equatable, Sendable {
    public var name: String
    public var recording: Bool
    public var persistent: Bool
    public var inconsistent: Bool
    public var granularity: UInt64
    /// Bytes covered by set bits (hbitmap_count: whole chunks).
    public var count: UInt64
}

/// A source of block-dirty-bitmap-merge: a bitmap of the target's node
/// (`node` nil) or of another node.
public struct DirtyBitmapSource: Equatable, Sendable {
    public var node: String?
    public var name: String
    public init(node: String?, name: String) {
        self.node = node
        self.name = name
    }
}

extension BlockGraph {
    /// block-dirty-bitmap-add.
    public func addDirtyBitmap(node: String, name: String, granularity: UInt64?, persistent: Bool,
                               disabled: Bool) throws {
        guard !name.isEmpty else { throw BlockGraphError("Bitmap name cannot be empty") }
        let found = try lookup(device: node, nodeName: node)
        try bitmapCall {
            guard let image = try bitmapImage(found, persistent: persistent) else {
                throw BlockGraphError("Can't store persistent bitmaps to \(found.nodeName): Operation not supported")
            }
            try image.addDirtyBitmap(name, granularity: granularity, persistent: persistent, disabled: disabled,
                                     node: found.nodeName)
        }
    }

    /// block-dirty-bitmap-remove, -clear, -enable and -disable.
    public func changeDirtyBitmap(node: String, name: String, _ change: DirtyBitmapChange) throws {
        let image = try bitmapNode(node, name)
        try bitmapCall {
            switch change {
            case .remove: try image.removeDirtyBitmap(name)
            case .clear: try image.clearDirtyBitmap(name)
            case .enable: try image.setDirtyBitmapEnabled(name, true)
            case .disable: try image.setDirtyBitmapEnabled(name, false)
            }
        }
    }

    /// block-dirty-bitmap-merge: the sources in order into `target`.
    public func mergeDirtyBitmaps(node: String, target: String, sources: [DirtyBitmapSource]) throws {
        _ = try mergeDirtyBitmapsKeepingBackup(node: node, target: target, sources: sources)
    }

    /// As block_dirty_bitmap_merge does it: the sources gathered first into
    /// an anonymous bitmap at the target's granularity, so that a failing
    /// source leaves the target unchanged; then that one into the target.
    /// Returns the target's image and the target as it was.
    func mergeDirtyBitmapsKeepingBackup(node: String, target: String,
                                        sources: [DirtyBitmapSource]) throws -> (Qcow2Image, DirtyBitmap) {
        let image = try bitmapNode(node, target)
        return try bitmapCall {
            let destination = try image.dirtyBitmap(named: target)
            var gathered = DirtyBitmap(name: target, granularity: destination.granularity, size: destination.size,
                                       isPersistent: false)
            for source in sources {
                let from = try source.node.map { try bitmapNode($0, source.name) } ?? image
                try gathered.mergeChecked(try from.dirtyBitmap(named: source.name))
            }
            return (image, try image.mergeDirtyBitmap(into: target, from: gathered))
        }
    }

    /// The bitmaps of `node`, newest first (empty for nodes without any).
    /// A read-only node lists those on disk, as QEMU lists the read-only
    /// bitmaps it loads (in-use ones inconsistent, not recording, no bits).
    public func dirtyBitmaps(of node: BlockNode) -> [DirtyBitmapInfo] {
        guard let qcow2 = node.qcow2, let bitmaps = try? qcow2.dirtyBitmaps() else { return [] }
        return bitmaps.map {
            DirtyBitmapInfo(name: $0.name, recording: $0.isEnabled, persistent: $0.isPersistent,
                            inconsistent: $0.isInconsistent, granularity: $0.granularity,
                            count: $0.dirtyRuns().reduce(0) { $0 + ($1.last - $1.first + 1) } * $0.granularity)
        }
    }

    /// block_dirty_bitmap_lookup: the node's image holding bitmap `name`.
    func bitmapNode(_ node: String, _ name: String) throws -> Qcow2Image {
        guard let found = self.node(named: node) ?? drives.first(where: { $0.id == node })?.node else {
            throw BlockGraphError("Node '\(node)' not found")
        }
        guard let image = try bitmapImage(found, persistent: false) else {
            throw BlockGraphError("Dirty bitmap '\(name)' not found")
        }
        _ = try bitmapCall { try image.dirtyBitmap(named: name) }
        return image
    }

    /// The image that holds `node`'s bitmaps: its writable qcow2 image. A
    /// non-qcow2 node has none (nil: QEMU's messages); in-memory bitmaps
    /// on other nodes are not supported.
    private func bitmapImage(_ node: BlockNode, persistent: Bool) throws -> Qcow2Image? {
        guard let qcow2 = node.qcow2 else {
            if persistent { return nil }
            throw BlockGraphError("Dirty bitmaps on '\(node.driver)' nodes are not supported by qcowkit")
        }
        guard qcow2.isWritable else {
            throw BlockGraphError("Dirty bitmaps on read-only nodes are not supported by qcowkit")
        }
        return qcow2
    }

    /// The codec's bitmap errors in QEMU's words, as graph errors.
    func bitmapCall<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as BitmapError {
            throw BlockGraphError(error.message.split(separator: "\n").first.map(String.init) ?? error.message)
        } catch let error as BlockGraphError {
            throw error
        } catch {
            throw BlockGraphError(Qcow2Error.reason(of: error))
        }
    }
}

public enum DirtyBitmapChange: Sendable {
    case remove, clear, enable, disable
}

extension BlockNode {
    /// The image an NBD export of this node looks its bitmaps up from (with
    /// its backing chain below, as nbd_export_create walks it).
    public var bitmapLookupImage: BlockImage { image }
}
