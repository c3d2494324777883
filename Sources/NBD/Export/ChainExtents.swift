// What every backend over QcowKit's images shares: the two block-status
// contexts read off a backing-chain status (QEMU's bdrv_block_status_above
// for base:allocation, bdrv_is_allocated_above for qemu:allocation-depth),
// and the codec's errors answered with the NBD error for QEMU's errno.
import Qcow2

extension NBDAllocationExtent {
    /// base:allocation from the deciding layer's status.
    public init(deciding status: BlockStatus) {
        self.init(length: status.length, isHole: !status.isData, isZero: status.isZero)
    }

    public init(_ chain: ChainBlockStatus) { self.init(deciding: chain.status) }
}

extension NBDDepthExtent {
    /// qemu:allocation-depth: the deciding layer's depth below the top
    /// (`depth`, 0 for the top) plus one, 0 where no layer allocates the range.
    public init(deciding status: BlockStatus, depth: Int) {
        let allocated = status.isAllocated || status.isData
        self.init(length: status.length, depth: allocated ? UInt32(depth + 1) : 0)
    }

    public init(_ chain: ChainBlockStatus) { self.init(deciding: chain.status, depth: chain.depth) }
}

extension NBDExportError {
    /// Runs `body`; a codec error becomes the NBD error QEMU's server
    /// answers with for the errno QEMU's driver fails with.
    public static func mapping<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as NBDExportError {
            throw error
        } catch {
            throw NBDExportError(NBDErrorCode(errno: Qcow2Error.errnoValue(of: error)), "\(error)")
        }
    }
}
