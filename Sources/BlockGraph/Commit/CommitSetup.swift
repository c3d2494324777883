// block-commit's checks, in QEMU 7.2's order and words (blockdev.c
// qmp_block_commit, block/commit.c commit_start, block/mirror.c
// commit_active_start): the device must be a root node; `top` defaults to
// it (active commit), `base` to the bottom of top's chain; both must lie in
// the chain in that order; no node involved may be busy with another job.
// Then the job takes hold of its nodes and base is made writable.

import Qcow2

extension BlockGraph {
    /// Validates `request` and prepares the job's work. The driver holds its
    /// nodes from now on: if the job is not started after all, call its
    /// `clean()`.
    public func makeCommitDriver(_ request: CommitRequest) throws -> BlockJobDriver {
        let device = try rootNode(device: request.device)
        try checkNotBusy(device)

        var top = device
        if request.topNode != nil && request.top != nil {
            throw BlockGraphError("'top-node' and 'top' are mutually exclusive")
        } else if let topNode = request.topNode {
            top = try lookup(device: nil, nodeName: topNode)
            guard chain(of: device, contains: top) else {
                throw BlockGraphError("'\(topNode)' is not in this backing file chain")
            }
        } else if let topName = request.top, device.filename != topName {
            guard let found = findBackingImage(below: device, named: topName) else {
                throw BlockGraphError("Top image file \(topName) not found")
            }
            top = found
        }

        let base: BlockNode
        if request.baseNode != nil && request.base != nil {
            throw BlockGraphError("'base-node' and 'base' are mutually exclusive")
        } else if let baseNode = request.baseNode {
            base = try lookup(device: nil, nodeName: baseNode)
            guard chain(of: top, contains: base) else {
                throw BlockGraphError("'\(baseNode)' is not in this backing file chain")
            }
        } else if let baseName = request.base {
            guard let found = findBackingImage(below: top, named: baseName) else {
                throw BlockGraphError("Can't find '\(baseName)' in the backing chain")
            }
            base = found
        } else {
            var bottom = top
            while let next = bottom.backing { bottom = next }
            base = bottom
        }

        // Everything from top down to base must be free.
        var layers: [BlockNode] = []
        var current: BlockNode? = top
        while let layer = current {
            try checkNotBusy(layer)
            layers.append(layer)
            if layer === base { break }
            current = layer.backing
        }
        guard top !== base else { throw BlockGraphError("cannot commit an image into itself") }
        guard base.isFormatNode, base.driver == "qcow2" || base.driver == "raw" else {
            throw BlockGraphError("Cannot commit into the '\(base.driver)' node '\(base.nodeName)'")
        }

        if top === device {
            if request.backingFile != nil {
                throw BlockGraphError("'backing-file' specified, but 'top' is the active layer")
            }
            return try ActiveCommitDriver(graph: self, device: device, base: base, layers: layers)
        }
        guard let overlay = layers.isEmpty ? nil : overlayOf(top, from: device) else {
            throw BlockGraphError("Top image file \(request.top ?? top.nodeName) not found")
        }
        try checkNotBusy(overlay)
        return try CommitDriver(graph: self, device: device, top: top, base: base, overlay: overlay,
                                layers: layers, backingFile: request.backingFile)
    }

    /// QEMU's qmp_get_root_bs with block-commit's DeviceNotFound.
    func rootNode(device: String) throws -> BlockNode {
        let node = try lookup(device: device)
        guard isRoot(node) else { throw BlockGraphError("Need a root block node") }
        return node
    }

    /// The node whose backing is `node`, in `top`'s chain (bdrv_find_overlay).
    func overlayOf(_ node: BlockNode, from top: BlockNode) -> BlockNode? {
        var current = top
        while let next = current.backing {
            if next === node { return current }
            current = next
        }
        return nil
    }

    /// The drive id a node is the root of, or "" (QEMU's
    /// bdrv_get_device_name: what a job id defaults to).
    public func deviceName(of node: BlockNode) -> String {
        drives.first { $0.node === node }?.id ?? ""
    }
}
