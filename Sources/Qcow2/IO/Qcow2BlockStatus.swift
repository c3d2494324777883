// Block status of one qcow2 layer, as QEMU's block layer reports it for a
// qcow2 node (qcow2_co_block_status plus the generic rules around it):
// - normal and compressed clusters are data; zero clusters are zero;
// - allocated clusters (normal, zero-allocated, and with extended L2 also
//   unallocated subclusters of an allocated cluster) give their host offset;
// - the layer "allocates" the range when it is data or zero;
// - an unallocated range reads as zero when there is no backing, or when the
//   range starts at or past the backing's end;
// - in a metadata-preallocated image, data clusters that are holes in the
//   host file read as zero (and a run stops where the host file's does).

extension Qcow2Image {
    /// The status of the run at `offset` as this layer maps it (data, zero,
    /// unallocated; where it is stored). Throws `Qcow2Error` on I/O errors
    /// or corrupt metadata.
    public func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        try checkStatusQuery(offset, length)
        let extent = try clusterMap.lookup(at: offset, length: min(length, size - offset))
        var status = BlockStatus(length: extent.length, isData: false, isZero: false, isAllocated: false)
        switch extent.type {
        case .normal:
            status.isData = true
            status.hostOffset = extent.hostOffset
        case .compressed:
            status.isData = true
        case .zeroAllocated:
            status.isZero = true
            status.hostOffset = extent.hostOffset
        case .zeroPlain:
            status.isZero = true
        case .unallocatedAllocated:
            status.hostOffset = extent.hostOffset
        case .unallocatedPlain, .invalid:
            break
        }
        if status.hostOffset != nil { status.hostFile = file.path }

        if status.isData || status.isZero {
            status.isAllocated = true
        } else if let backing {
            if offset >= backing.size { status.isZero = true }
        } else {
            status.isZero = true
        }

        if status.isData, !status.isZero, let host = status.hostOffset, isMetadataPreallocated() {
            let hostExtent = file.extent(at: host, length: status.length, totalSize: try file.sectorRoundedSize())
            if hostExtent.reachesEnd && (hostExtent.length == 0 || !hostExtent.isData) {
                // Clusters past the end of the host file read as zeroes.
                status.isZero = true
            } else {
                status.length = hostExtent.length
                if !hostExtent.isData { status.isZero = true }
            }
        }
        return status
    }

    /// Decided once per image; an image whose refcounts cannot be read is
    /// taken as not preallocated, as QEMU does.
    func isMetadataPreallocated() -> Bool {
        metadataPreallocated.withLock { known in
            if let known { return known }
            let detected = (try? MetadataPreallocation.detect(file: file, header: header)) ?? false
            known = detected
            return detected
        }
    }
}
