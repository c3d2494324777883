// Every cluster's recorded refcount against the references counted
// (compare_refcounts). Higher than counted is a leak, lower is corruption;
// a zero refcount where references exist means the refcount blocks are
// missing something, and only a rebuild can fix that.

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
        while cluster < references.count {
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
