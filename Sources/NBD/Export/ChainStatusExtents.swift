// What every export backend over the codec shares: block status through a
// backing chain as the two meta contexts' extents, and the codec's errors
// as the NBD errors QEMU's server answers with.
import Qcow2

extension NBDAllocationExtent {
    /// base:allocation from the chain's status: a hole where no layer
    /// stores data, zero where the range reads as zeroes.
    public init(chain status: BlockStatus) {
        self.init(length: status.length, isHole: !status.isData, isZero: status.isZero)
    }
}

extension NBDDepthExtent {
    /// qemu:allocation-depth: the deciding layer (1 the top, 2 its backing,
    /// ...) or 0 where nothing in the chain is allocated; `depth` counts
    /// from 0 at the top, as chainBlockStatus does.
    public init(chain status: BlockStatus, depth: Int) {
        let allocated = status.isAllocated || status.isData
        self.init(length: status.length, depth: allocated ? UInt32(depth + 1) : 0)
    }
}

extension NBDExportError {
    /// Runs `body`, turning the codec's errors into the NBD error QEMU's
    /// server answers with for the errno QEMU's driver fails with.
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
