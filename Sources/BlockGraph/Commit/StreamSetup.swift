// block-stream's checks in QEMU 7.2's order and words (blockdev.c
// qmp_block_stream, block/stream.c stream_start). Unlike block-commit the
// device may be any node, and a missing one is a generic error.

extension BlockGraph {
    /// Validates `request` and prepares the job's work. As with
    /// `makeCommitDriver`, the driver holds its nodes from now on.
    public func makeStreamDriver(_ request: StreamRequest) throws -> BlockJobDriver {
        let device = try lookup(device: request.device, nodeName: request.device)
        if request.base != nil && request.baseNode != nil {
            throw BlockGraphError("'base' and 'base-node' cannot be specified at the same time")
        }
        var base: BlockNode?
        if let baseName = request.base {
            guard let found = findBackingImage(below: device, named: baseName) else {
                throw BlockGraphError("Can't find '\(baseName)' in the backing chain")
            }
            base = found
        }
        if let baseNode = request.baseNode {
            let found = try lookup(device: nil, nodeName: baseNode)
            guard found !== device, chain(of: device, contains: found) else {
                throw BlockGraphError("Node '\(baseNode)' is not a backing image of '\(request.device)'")
            }
            base = found
        }
        if request.backingFile != nil && base == nil {
            throw BlockGraphError("backing file specified, but streaming the entire chain")
        }
        // The device and every layer down to base (not base) must be free.
        var layers: [BlockNode] = []
        var current: BlockNode? = device
        while let layer = current, layer !== base {
            try checkNotBusy(layer)
            layers.append(layer)
            current = layer.backing
        }
        return try StreamDriver(graph: self, device: device, base: base, intermediates: Array(layers.dropFirst()),
                                backingFile: request.backingFile)
    }
}
