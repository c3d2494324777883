// The refcount table's entries (check_refblocks): each names a refcount
// block that must be cluster aligned, inside the file, and referenced exactly
// once. Anything else means the refcount structure cannot be trusted and must
// be rebuilt, except a block past the end of the file, which a repair brings
// into the file by growing it.

extension RefcountCheck {
    /// How far past the end of the file a refcount block may lie and still
    /// be made room for by a repair.
    static let maxRefcountBlockDistance: UInt64 = 1 << 30

    func checkRefcountBlocks(repair: CheckRepair) throws {
        let fixing = repair.contains(.errors)
        for i in 0..<image.refcountTable.count {
            let entry = image.refcountTable[i]
            let offset = entry & CheckMask.refcountTableOffset
            let cluster = offset >> geometry.clusterBits

            if entry & CheckMask.refcountTableReserved != 0 {
                report("ERROR refcount table entry \(i) has reserved bits set")
                result.corruptions += 1
                rebuild = true
                continue
            }
            if geometry.offsetIntoCluster(offset) != 0 {
                report("ERROR refcount block \(i) is not cluster aligned; refcount table entry corrupted")
                result.corruptions += 1
                rebuild = true
                continue
            }
            if cluster >= UInt64(references.count) {
                result.corruptions += 1
                report("\(fixing ? "Repairing" : "ERROR") refcount block \(i) is outside image")
                if fixing {
                    if let errno = try growFile(toReach: offset, cluster: cluster) {
                        rebuild = true
                        report("ERROR could not resize image: \(errnoDescription(errno))")
                    }
                }
                continue
            }
            if offset != 0 {
                try countReference(offset: offset, size: geometry.clusterSize)
                let count = references[Int64(cluster)]
                if count != 1 {
                    report("ERROR refcount block \(i) refcount=\(count)")
                    result.corruptions += 1
                    rebuild = true
                }
            }
        }
    }

    /// Grows the file to hold the refcount block at `offset` and counts it;
    /// returns the errno when that is impossible. QEMU grows the file however
    /// far the block lies; a block far past the end (hostile input) would make
    /// the file and the in-memory counts huge, so that fails as a file too
    /// large, and the structure is rebuilt instead.
    private func growFile(toReach offset: UInt64, cluster: UInt64) throws -> Int32? {
        guard offset <= UInt64(Int64.max) - geometry.clusterSize else { return CheckErrno.invalid }
        let fileLength = try image.fileLength()
        guard offset < fileLength || offset - fileLength < Self.maxRefcountBlockDistance else {
            return CheckErrno.tooBig
        }
        do {
            // Never shrinks: the block lies past the current end.
            if try image.fileLength() < offset + geometry.clusterSize {
                try image.truncate(to: offset + geometry.clusterSize)
            }
        } catch let failure as CheckFailure {
            reportError("Could not resize file: \(failure)")
            return failure.errno
        }
        let newClusters = geometry.clusters(forBytes: try image.fileLength())
        do {
            try references.resize(to: max(references.count, Int64(clamping: newClusters)))
        } catch {
            result.checkErrors += 1
            throw error
        }
        guard cluster < UInt64(references.count) else { return CheckErrno.invalid }
        result.corruptions -= 1
        result.corruptionsFixed += 1
        // The new space reads as zeroes: this is the block's only reference.
        try countReference(offset: offset, size: geometry.clusterSize)
        return nil
    }
}
