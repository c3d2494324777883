// The "copied" flag (bit 63) of active L1 and L2 entries promises that the
// cluster's refcount is exactly one, so it can be written in place
// (check_oflag_copied). Checked against the refcounts on disk, after any
// refcount repairs: a repair sets or clears the flag to match.

extension RefcountCheck {
    func checkCopiedFlags() throws {
        let fix: Bool
        if repair.contains(.errors) {
            fix = true
        } else if repair.contains(.leaks) {
            // Only when the refcounts are known to be right by now.
            fix = result.checkErrors == 0 && result.corruptions == 0 && result.leaks == 0
        } else {
            fix = false
        }
        let label = fix ? "Repairing" : "ERROR"

        let l1Table = image.l1Table
        var readAhead = TableReadAhead(file: image.file, clusterSize: geometry.clusterSize, count: l1Table.count) {
            l1Table[$0] & CheckMask.l1Offset
        }
        for i in 0..<image.l1Table.count {
            let l1Entry = image.l1Table[i]
            let l2Offset = l1Entry & CheckMask.l1Offset
            guard l2Offset != 0 else { continue }
            readAhead.advance(to: i)

            // Refcounts that cannot be read were reported by the comparison.
            guard let refcount = recordedRefcount(ofCluster: Int64(l2Offset >> geometry.clusterBits)) else { continue }
            if (refcount == 1) != (l1Entry & CheckMask.copied != 0) {
                result.corruptions += 1
                report("\(label) OFLAG_COPIED L2 cluster: l1_index=\(i) l1_entry=\(hexBare(l1Entry)) refcount=\(refcount)")
                if fix {
                    let fixed = refcount == 1 ? l1Entry | CheckMask.copied : l1Entry & ~CheckMask.copied
                    do {
                        try writeL1Entry(i, fixed)
                    } catch {
                        result.checkErrors += 1
                        throw error
                    }
                    result.corruptions -= 1
                    result.corruptionsFixed += 1
                }
            }

            // Only the part inside the file is read (the rest is zeroes).
            var table: [UInt8]
            do {
                let size = geometry.clusterSize
                guard l2Offset <= UInt64(Int64.max) - size else { throw CheckFailure(errno: CheckErrno.io) }
                let fileLength = try image.fileLength()
                let inFile = l2Offset >= fileLength ? 0 : min(size, fileLength - l2Offset)
                let entrySize = UInt64(geometry.l2EntrySize)
                table = try image.read(Int((inFile + entrySize - 1) / entrySize * entrySize), at: l2Offset)
            } catch let failure as CheckFailure {
                report("ERROR: Could not read L2 table: \(failure)")
                result.checkErrors += 1
                throw failure
            }
            // Entries to rewrite, (position, entry), applied once the scan is done.
            var fixes: [(Int, UInt64)] = []
            table.withUnsafeBytes { bytes in
                for j in 0..<(bytes.count / geometry.l2EntrySize) {
                    let position = j * geometry.l2EntrySize
                    let entry = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self))
                    switch CheckClusterType(entry: entry, extendedL2: geometry.extendedL2) {
                    case .normal, .zeroAllocated:
                        let dataOffset = entry & CheckMask.l2Offset
                        guard let refcount = recordedRefcount(ofCluster: Int64(dataOffset >> geometry.clusterBits)),
                              (refcount == 1) != (entry & CheckMask.copied != 0) else { continue }
                        result.corruptions += 1
                        report("\(label) OFLAG_COPIED data cluster: l2_entry=\(hexBare(entry)) refcount=\(refcount)")
                        if fix {
                            fixes.append((position, refcount == 1 ? entry | CheckMask.copied : entry & ~CheckMask.copied))
                        }
                    default:
                        continue
                    }
                }
            }
            for (position, entry) in fixes { table.setBE(entry, at: position) }
            let dirty = fixes.count
            guard dirty > 0 else { continue }
            do {
                try image.checkBeforeWriting(offset: l2Offset, size: geometry.clusterSize, ignoring: [.activeL2],
                                             diagnostics: diagnostics)
            } catch let failure as CheckFailure {
                report("ERROR: Could not write L2 table; metadata overlap check failed: \(failure)")
                result.checkErrors += 1
                throw failure
            }
            table += [UInt8](repeating: 0, count: Int(geometry.clusterSize) - table.count)
            do {
                try image.write(table, at: l2Offset)
            } catch let failure as CheckFailure {
                report("ERROR: Could not write L2 table: \(failure)")
                result.checkErrors += 1
                throw failure
            }
            result.corruptions -= dirty
            result.corruptionsFixed += dirty
        }
    }

    /// Writes one active L1 entry, in memory and on disk (qcow2_write_l1_entry).
    private func writeL1Entry(_ index: Int, _ entry: UInt64) throws {
        image.l1Table[index] = entry
        let offset = image.header.l1TableOffset + UInt64(index) * 8
        try image.checkBeforeWriting(offset: offset, size: 8, ignoring: [.activeL1], diagnostics: diagnostics)
        var bytes = [UInt8](repeating: 0, count: 8)
        bytes.setBE(entry, at: 0)
        try image.write(bytes, at: offset)
        try image.flush()
    }
}
