// The first cluster of an image as QEMU's qcow2_update_header writes it: the
// fixed header, then the header extensions (backing format, the feature name
// table for version 3 images with clusters over 4 KiB, which QEMU leaves out
// of small clusters to keep room for a backing file name, and any unknown
// extensions carried over), the end marker, and right after it the backing
// file name, zero padded. A bitmaps extension given is written after the
// feature table (the write path leaves out a stale one, as QEMU drops it).
// The one encoder of header clusters: creation writes its final header
// through the write path's header update.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum HeaderCluster {
    /// Clusters of this size or smaller get no feature name table.
    static let featureTableMinimumClusterSize: UInt64 = 4096

    /// The cluster for `header` (its backing file fields are filled in here),
    /// with the extensions of `extensions` that QEMU keeps. Throws ENOSPC
    /// when the extensions and the name do not fit in the cluster.
    static func encode(header: Qcow2Header, extensions: [HeaderExtension], backingFileName: String?) throws -> [UInt8] {
        var h = header
        let clusterSize = Int(h.clusterSize)
        var records: [HeaderExtension] = []
        for case let .backingFormat(format) in extensions { records.append(.backingFormat(format)) }
        if h.version >= 3 && h.clusterSize > featureTableMinimumClusterSize {
            records.append(.featureNameTable(FeatureName.qemuTable))
        }
        for case let .bitmaps(data) in extensions { records.append(.bitmaps(data)) }
        for case let .unknown(type, data) in extensions { records.append(.unknown(type: type, data: data)) }
        let extensionBytes = HeaderExtension.encodeAll(records)

        let nameBytes = backingFileName.map { Array($0.utf8) } ?? []
        let fixedLength = h.encodedLength
        guard fixedLength + extensionBytes.count + nameBytes.count <= clusterSize else {
            throw Qcow2Error.writeFailed(errno: ENOSPC, reason: "The header does not fit its cluster")
        }
        if backingFileName != nil {
            h.backingFileOffset = UInt64(fixedLength + extensionBytes.count)
            h.backingFileSize = UInt32(nameBytes.count)
        } else {
            h.backingFileOffset = 0
            h.backingFileSize = 0
        }
        var cluster = h.encode() + extensionBytes + nameBytes
        cluster += [UInt8](repeating: 0, count: clusterSize - cluster.count)
        return cluster
    }
}
