// Hand-built qcow2 images for read-path unit tests, so that entries QEMU
// never writes (misaligned, reserved bits, invalid bitmaps) can be tested.
// Layout: cluster 0 header, 1 refcount table (empty), 2 L1 table, then L2
// tables and data clusters in the order they are added.
import Foundation
@testable import Qcow2

final class TestDirectory {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "qcowkit-readpath-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

struct TestImage {
    var clusterBits: UInt32 = 9
    var size: UInt64
    var version: UInt32 = 3
    var extendedL2 = false
    var backingName: String?
    var backingFormat: String?
    /// L1 entries (raw values); the table is sized for `size`, at least 1 entry.
    var l1: [UInt64]
    /// Cluster index -> contents (at most one cluster).
    var clusters: [UInt64: [UInt8]] = [:]
    private var nextCluster: UInt64 = 3

    var clusterSize: UInt64 { 1 << UInt64(clusterBits) }

    init(size: UInt64, clusterBits: UInt32 = 9, extendedL2: Bool = false, version: UInt32 = 3) {
        self.size = size
        self.clusterBits = clusterBits
        self.extendedL2 = extendedL2
        self.version = version
        let clusterSize = UInt64(1) << UInt64(clusterBits)
        let entries = (clusterSize / (extendedL2 ? 16 : 8)) << UInt64(clusterBits)
        l1 = [UInt64](repeating: 0, count: max(1, Int(divideRoundingUp(size, entries))))
    }

    /// Reserves the next host cluster with `bytes`; returns its offset.
    mutating func addCluster(_ bytes: [UInt8]) -> UInt64 {
        let index = nextCluster
        nextCluster += 1
        clusters[index] = bytes
        return index << UInt64(clusterBits)
    }

    /// Adds an L2 table (entries as raw words, descriptor then bitmap with
    /// extended L2) and points L1 entry `l1Index` at it.
    mutating func addL2(l1Index: Int, words: [UInt64]) -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: Int(clusterSize))
        for (i, word) in words.enumerated() { bytes.setBE(word, at: i * 8) }
        let offset = addCluster(bytes)
        l1[l1Index] = offset | Qcow2EntryMask.copied
        return offset
    }

    func write(to path: String) throws {
        var header = Qcow2Header(version: version, clusterBits: clusterBits, size: size)
        header.l1Size = UInt32(l1.count)
        header.l1TableOffset = 2 * clusterSize
        header.refcountTableOffset = clusterSize
        header.refcountTableClusters = 1
        if extendedL2 { header.incompatibleFeatures.insert(.extendedL2) }
        var first = header.encode()
        if version >= 3 {
            var extensions: [HeaderExtension] = []
            if let backingFormat { extensions.append(.backingFormat(backingFormat)) }
            first += HeaderExtension.encodeAll(extensions)
        }
        if let backingName {
            let offset = first.count
            first += Array(backingName.utf8)
            first.setBE(UInt64(offset), at: 8)
            first.setBE(UInt32(backingName.utf8.count), at: 16)
        }
        precondition(UInt64(first.count) <= clusterSize)
        let fileClusters = (clusters.keys.max() ?? 2) + 1
        var file = [UInt8](repeating: 0, count: Int(fileClusters * clusterSize))
        file.replaceSubrange(0..<first.count, with: first)
        for (i, entry) in l1.enumerated() { file.setBE(entry, at: Int(2 * clusterSize) + i * 8) }
        for (index, bytes) in clusters {
            let start = Int(index * clusterSize)
            file.replaceSubrange(start..<(start + bytes.count), with: bytes)
        }
        try Data(file).write(to: URL(fileURLWithPath: path))
    }
}
