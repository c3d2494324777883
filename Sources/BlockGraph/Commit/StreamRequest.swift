// block-stream's arguments as the graph needs them (qapi/block-core.json):
// the node to fill, and the base to stop at by file name or node name.
// (Streaming sits with commit: both copy data along a backing chain and
// drop the layers they make unnecessary.)

public struct StreamRequest: Equatable, Sendable {
    /// A drive id or node name: the node data is copied into.
    public var device: String
    /// Base by file name (bdrv_find_backing_image) ...
    public var base: String?
    /// ... or by node name; neither: the whole chain is copied.
    public var baseNode: String?
    /// The backing file name written into the device's header instead of
    /// base's file name.
    public var backingFile: String?

    public init(device: String, base: String? = nil, baseNode: String? = nil, backingFile: String? = nil) {
        self.device = device
        self.base = base
        self.baseNode = baseNode
        self.backingFile = backingFile
    }
}
