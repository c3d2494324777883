// Hand-made qcow2 images for the info tests: a header cluster (header,
// extensions, backing name), then refcount table, L1 table and snapshot table
// clusters. Info reads nothing else, so no data or refcount blocks are needed.
import Foundation
import Qcow2

struct InfoTestImage {
    var size: UInt64 = 1 << 20
    var clusterBits: UInt32 = 9
    var version: UInt32 = 3
    var backing: String?
    var backingFormat: String?
    var snapshotTable: [UInt8] = []
    var snapshotCount: UInt32 = 0
    var bitmapsExtension: [UInt8]?
    var autoclear: UInt64 = 0
    var incompatible: UInt64 = 0

    var bytes: [UInt8] {
        let cluster = 1 << Int(clusterBits)
        var h = Qcow2Header(version: version, clusterBits: clusterBits, size: size)
        h.refcountTableOffset = UInt64(cluster)
        h.refcountTableClusters = 1
        h.l1TableOffset = UInt64(2 * cluster)
        h.l1Size = UInt32(h.requiredL1Entries)
        h.snapshotsOffset = snapshotCount > 0 ? UInt64(3 * cluster) : 0
        h.snapshotCount = snapshotCount
        h.autoclearFeatures = AutoclearFeatures(rawValue: autoclear)
        h.incompatibleFeatures = IncompatibleFeatures(rawValue: incompatible)
        var extensions: [HeaderExtension] = []
        if let backingFormat { extensions.append(.backingFormat(backingFormat)) }
        if let bitmapsExtension { extensions.append(.bitmaps(bitmapsExtension)) }
        var first = h.encode() + (version >= 3 ? HeaderExtension.encodeAll(extensions) : [])
        if let backing {
            let name = Array(backing.utf8)
            var b = first
            b.append(contentsOf: name)
            first = b
            h.backingFileOffset = UInt64(first.count - name.count)
            h.backingFileSize = UInt32(name.count)
            first.replaceSubrange(0..<h.encodedLength, with: h.encode())
        }
        precondition(first.count <= cluster)
        // Header, refcount table and L1 table clusters, then the snapshot
        // table; the file ends where the table does (as QEMU's files may).
        var image = first + [UInt8](repeating: 0, count: 3 * cluster - first.count)
        image += snapshotTable.isEmpty ? [UInt8](repeating: 0, count: cluster) : snapshotTable
        return image
    }

    func write(to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}

/// A scratch directory for hand-made images, removed afterwards.
final class InfoTestDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.path + "/qcowkit-info-unit-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}
