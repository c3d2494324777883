// Block status through a backing chain, as `qemu-img map` and `convert` see
// it: the topmost layer that decides a range (data or zeroes) answers for
// it, and `depth` says how many backing links down that layer is.

/// Block status through a backing chain: the deciding layer's answer and
/// how deep it is.
public struct ChainBlockStatus: Equatable, Sendable {
    /// The deciding layer's status; `length` is how far it holds.
    public var status: BlockStatus
    /// 0 for the top image, 1 for its backing, and so on.
    public var depth: Int
}

extension BlockImage {
    /// The status of the run of bytes at `offset` (at most `length`), looking
    /// down the chain past layers that leave the range unallocated. Each lower
    /// layer is asked only about the run the layer above left to it.
    /// Throws what the layers' `blockStatus` throws.
    public func chainBlockStatus(at offset: UInt64, length: UInt64) throws -> ChainBlockStatus {
        var layer: BlockImage = self
        var depth = 0
        var bytes = length
        while true {
            let status = try layer.blockStatus(at: offset, length: bytes)
            bytes = status.length
            // A layer without a backing always decides (unallocated reads as
            // zero there), so the walk ends at the bottom at the latest.
            guard !status.isData, !status.isZero, let below = layer.backing else {
                return ChainBlockStatus(status: status, depth: depth)
            }
            layer = below
            depth += 1
        }
    }
}
