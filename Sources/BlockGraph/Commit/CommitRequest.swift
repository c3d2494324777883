// block-commit's arguments as the graph needs them (qapi/block-core.json):
// the device, and top and base either by file name or by node name.

public struct CommitRequest: Equatable, Sendable {
    /// A drive id or node name: the root whose chain is committed.
    public var device: String
    /// Base by file name (bdrv_find_backing_image) ...
    public var base: String?
    /// ... or by node name; neither: the bottom of the chain.
    public var baseNode: String?
    /// Top by file name ...
    public var top: String?
    /// ... or by node name; neither: the device's active node (active commit).
    public var topNode: String?
    /// The backing file name written into the overlays' headers instead of
    /// base's file name (intermediate commit only).
    public var backingFile: String?

    public init(device: String, base: String? = nil, baseNode: String? = nil, top: String? = nil,
                topNode: String? = nil, backingFile: String? = nil) {
        self.device = device
        self.base = base
        self.baseNode = baseNode
        self.top = top
        self.topNode = topNode
        self.backingFile = backingFile
    }
}
