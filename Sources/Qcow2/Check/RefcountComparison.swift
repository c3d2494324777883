// Every cluster's recorded refcount against the references counted
// (compare_refcounts). Higher than counted is a leak, lower is corruption;
// a zero refcount where references exist means the refcount blocks are
// missing something, and only a rebuild can fix that.
//
// The counts are laid out as refcount blocks (ReferenceCounts), so a block
// that reads exactly as its slice of the counts has no finding in it: it is
// compared with one memcmp instead of cluster by cluster, and remembered
// (`matchingBlocks`) so that the copied-flag check reads its refcounts from
// memory. Any other block takes the cluster-by-cluster path, which makes
// every report and repair.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension RefcountCheck {
    /// Compares and repairs what `repair` allows. Returns the highest
    /// cluster that is in use by either count.
    func compare(repair: CheckRepair) throws -> Int64 {
        var highest: Int64 = 0
        var cluster: Int64 = 0
        // The block of the last lookup, read directly while the scan stays
        // in it: the same cache hits QEMU makes, without the lookups.
        var block: (index: Int64, bytes: [UInt8])?
        let blockBits = Int64(geometry.refblockBits)
        let blockMask = Int64(geometry.refblockSize) - 1
        matchingBlocks = MatchingBlocks()
        let refcountTable = image.refcountTable
        var readAhead = TableReadAhead(file: image.file, clusterSize: geometry.clusterSize, count: refcountTable.count) {
            refcountTable[$0] & CheckMask.refcountTableOffset
        }
        while cluster < references.count {
            if cluster & blockMask == 0 { readAhead.advance(to: Int(cluster >> blockBits)) }
            if cluster & blockMask == 0, let last = try matchingBlock(at: cluster, highest: &highest) {
                cluster = last + 1
                continue
            }
            defer { cluster += 1 }
            let recorded: UInt64
            if let block, block.index == cluster >> blockBits {
                recorded = block.bytes.isEmpty ? 0 : block.bytes.withUnsafeBytes {
                    RefcountCoding.get($0, index: Int(cluster & blockMask), width: geometry.width)
                }
            } else {
                do {
                    recorded = try image.refcount(ofCluster: cluster, diagnostics: diagnostics)
                } catch let failure as CheckFailure {
                    report("Can't get refcount for cluster \(cluster): \(failure)")
                    result.checkErrors += 1
                    continue
                }
                block = image.allocator.cachedRefcountBlock(forCluster: UInt64(cluster)).map { (cluster >> blockBits, $0) }
            }
            let counted = references[cluster]
            if recorded > 0 || counted > 0 { highest = cluster }
            guard recorded != counted else { continue }
            // Repairs change blocks (or drop them from the cache): look up again.
            block = nil

            var fixesLeak = false, fixesCorruption = false
            if recorded == 0 {
                rebuild = true
            } else if recorded > counted && repair.contains(.leaks) {
                fixesLeak = true
            } else if recorded < counted && repair.contains(.errors) {
                fixesCorruption = true
            }
            let label = fixesLeak || fixesCorruption ? "Repairing" : recorded < counted ? "ERROR" : "Leaked"
            report("\(label) cluster \(cluster) refcount=\(recorded) reference=\(counted)")

            if fixesLeak || fixesCorruption {
                matchingBlocks.isValid = false
                let decrease = recorded > counted
                let difference = decrease ? recorded - counted : counted - recorded
                do {
                    try image.changeRefcount(ofCluster: cluster, by: difference, decrease: decrease,
                                             diagnostics: diagnostics)
                    if fixesLeak { result.leaksFixed += 1 } else { result.corruptionsFixed += 1 }
                    continue
                } catch is CheckFailure {
                    // Counted as not fixed, below.
                }
            }
            if recorded < counted {
                result.corruptions += 1
            } else {
                result.leaks += 1
            }
        }
        return highest
    }
}

extension RefcountCheck {
    /// At the first cluster of a refcount block: looks the block up as the
    /// cluster-by-cluster path does (the same cache use, the same errors),
    /// and if it reads exactly as the counts for its clusters, moves
    /// `highest` past its clusters in use and returns its last cluster
    /// below `references.count`. nil: compare this block cluster by cluster.
    private func matchingBlock(at cluster: Int64, highest: inout Int64) throws -> Int64? {
        let index = cluster >> Int64(geometry.refblockBits)
        let last = min(cluster + Int64(geometry.refblockSize), references.count) - 1
        // A block that cannot be read is reported cluster by cluster.
        guard (try? image.refcount(ofCluster: cluster, diagnostics: diagnostics)) != nil,
              let bytes = image.allocator.cachedRefcountBlock(forCluster: UInt64(cluster)) else { return nil }
        if bytes.isEmpty {
            // No block: every refcount is zero, as every count must be.
            guard references.isZero(from: cluster, to: last + 1) else { return nil }
        } else {
            let counted = references.refcountBlock(index)
            guard bytes.count == counted.count,
                  bytes.withUnsafeBytes({ memcmp($0.baseAddress!, counted.baseAddress!, counted.count) }) == 0
            else { return nil }
            if let used = references.lastNonZero(inBlock: index) { highest = used }
        }
        matchingBlocks.insert(index)
        return last
    }

    /// The refcount of `cluster` as recorded on disk, nil where it cannot be
    /// read: from the counts where the last comparison found its block
    /// identical to them (and changed nothing since), else from the image.
    @inline(__always)
    func recordedRefcount(ofCluster cluster: Int64) -> UInt64? {
        if cluster >= 0, cluster < references.count,
           matchingBlocks.contains(cluster >> Int64(geometry.refblockBits)) {
            return references[cluster]
        }
        return try? image.refcount(ofCluster: cluster, diagnostics: diagnostics)
    }
}

/// The refcount blocks the last comparison found identical to the counts,
/// while nothing changed refcounts since (a repair clears `isValid`).
struct MatchingBlocks {
    private var blocks: [Bool] = []
    var isValid = true

    mutating func insert(_ index: Int64) {
        let i = Int(index)
        if i >= blocks.count { blocks += [Bool](repeating: false, count: i + 1 - blocks.count) }
        blocks[i] = true
    }

    func contains(_ index: Int64) -> Bool {
        isValid && index < blocks.count && blocks[Int(index)]
    }
}
