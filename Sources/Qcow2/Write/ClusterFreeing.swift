// Dropping references: QEMU's qcow2_free_clusters and qcow2_free_any_cluster
// cannot fail. When the refcount update does, QEMU prints
// "qcow2_free_clusters failed: <strerror>" on standard error and goes on (the
// clusters leak; `check` finds them); an L2 entry naming an unaligned cluster
// is a non-fatal corruption event. Every caller that frees on the write path
// (rollbacks, copy-on-write, discard, zero writes, L1 growth) comes here.

extension Qcow2Writer {
    /// qcow2_free_clusters.
    func freeClusters(offset: UInt64, length: UInt64, type: DiscardType) {
        do {
            try allocator.freeClusters(offset: offset, length: length, type: type)
        } catch {
            reportFreeFailure(error)
        }
    }

    /// qcow2_free_any_cluster: the reference an L2 entry holds, whatever
    /// the cluster's kind.
    func freeAnyCluster(entry: UInt64, type: DiscardType) {
        switch clusterType(entry) {
        case let .normal(host), let .zeroAllocated(host):
            guard offsetInCluster(host) == 0 else {
                image.report(Qcow2Diagnostic(.plain, "qcow2: Image is corrupt: Cannot free unaligned cluster \(hex(host)); "
                                                    + "further non-fatal corruption events will be suppressed"))
                return
            }
        default:
            break
        }
        do {
            try allocator.freeAnyCluster(entry: entry, extendedL2: extendedL2, type: type)
        } catch {
            reportFreeFailure(error)
        }
    }

    /// Broken refcount metadata met on the way is a fatal corruption event
    /// (the image is marked corrupt, its line printed), then the free fails
    /// with EIO as QEMU's does.
    private func reportFreeFailure(_ underlying: Error) {
        var error = underlying
        if case let Qcow2Error.corruptMetadata(message) = underlying {
            error = signalCorruption(message)
            image.report(Qcow2Diagnostic(.plain, "\(error)"))
        }
        image.report(Qcow2Diagnostic(.plain, "qcow2_free_clusters failed: \(Qcow2Error.reason(of: error))"))
    }
}
