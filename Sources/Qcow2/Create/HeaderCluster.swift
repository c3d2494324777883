// The first cluster of a new image as QEMU's qcow2_update_header writes it:
// the fixed header, then the header extensions (backing format, then the
// feature name table for version 3 images with clusters over 4 KiB, which
// QEMU leaves out of small clusters to keep room for a backing file name),
// the end marker, and right after it the backing file name, zero padded.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum HeaderCluster {
    /// Clusters of this size or smaller get no feature name table.
    static let featureTableMinimumClusterSize: UInt64 = 4096

    static func encode(
        header: Qcow2Header, backingFile: String?, backingFormat: String?
    ) throws -> [UInt8] {
        var header = header
        let clusterSize = Int(header.clusterSize)
        var extensions: [HeaderExtension] = []
        if let format = backingFormat, backingFile != nil { extensions.append(.backingFormat(format)) }
        if header.version >= 3 && header.clusterSize > featureTableMinimumClusterSize {
            extensions.append(.featureNameTable(FeatureName.qemuTable))
        }

        let fail = { (code: Int32) in
            Qcow2CreateError.couldNotAssignBackingFile(name: backingFile ?? "", format: backingFormat, errno: code)
        }
        if let name = backingFile, name.utf8.count > Int(Qcow2Limits.maxBackingFileNameLength) { throw fail(EINVAL) }

        let fixedLength = header.encodedLength
        let extensionBytes = HeaderExtension.encodeAll(extensions)
        // QEMU adds each extension only if it fits in what is left of the cluster.
        guard fixedLength + extensionBytes.count <= clusterSize else { throw fail(ENOSPC) }
        var nameBytes: [UInt8] = []
        if let name = backingFile {
            nameBytes = Array(name.utf8)
            guard nameBytes.count <= clusterSize - fixedLength - extensionBytes.count else { throw fail(ENOSPC) }
            header.backingFileOffset = UInt64(fixedLength + extensionBytes.count)
            header.backingFileSize = UInt32(nameBytes.count)
        } else {
            header.backingFileOffset = 0
            header.backingFileSize = 0
        }

        var cluster = header.encode()
        cluster += extensionBytes
        cluster += nameBytes
        cluster += [UInt8](repeating: 0, count: clusterSize - cluster.count)
        return cluster
    }
}
