// A small, fully known qcow2 image to damage on purpose, and what reading it
// must give: the hostile-image tests patch one field, entry or length at a
// time and check that every reader either refuses the result with an error or
// reads exactly the data the damaged image still describes.
//
// Layout (4 KiB clusters, version 3, 16-bit refcounts, 64 KiB disk):
//   0x0000 header, feature name table     0x5000 data of guest cluster 0
//   0x1000 refcount table                 0x6000 data of guest cluster 2
//   0x2000 refcount block                 0x7000 compressed guest cluster 4
//   0x3000 L1 table (one entry)           0x8000 snapshot table (one entry)
//   0x4000 L2 table                       guest cluster 6: zero flag; others unallocated
import Foundation
import Testing
@testable import Qcow2

struct HostileImage {
    static let clusterSize = 4096
    static let virtualSize = 64 << 10
    static let fileLength = 0x9000

    enum Offset {
        static let refcountTable = 0x1000, refcountBlock = 0x2000, l1 = 0x3000, l2 = 0x4000
        static let dataA = 0x5000, dataB = 0x6000, compressed = 0x7000, snapshots = 0x8000
    }

    /// A field of the fixed header: byte offset and width.
    struct Field: Sendable, CustomTestStringConvertible {
        var name: String
        var offset: Int
        var width: Int
        var testDescription: String { name }
        /// 0, 1, the largest value and one less, as the field's width allows.
        var extremes: [UInt64] {
            let max = width == 8 ? UInt64.max : (UInt64(1) << UInt64(width * 8)) - 1
            return [0, 1, max, max - 1]
        }
    }

    static let headerFields: [Field] = [
        Field(name: "magic", offset: 0, width: 4), Field(name: "version", offset: 4, width: 4),
        Field(name: "backing_file_offset", offset: 8, width: 8), Field(name: "backing_file_size", offset: 16, width: 4),
        Field(name: "cluster_bits", offset: 20, width: 4), Field(name: "size", offset: 24, width: 8),
        Field(name: "crypt_method", offset: 32, width: 4), Field(name: "l1_size", offset: 36, width: 4),
        Field(name: "l1_table_offset", offset: 40, width: 8), Field(name: "refcount_table_offset", offset: 48, width: 8),
        Field(name: "refcount_table_clusters", offset: 56, width: 4), Field(name: "nb_snapshots", offset: 60, width: 4),
        Field(name: "snapshots_offset", offset: 64, width: 8), Field(name: "incompatible_features", offset: 72, width: 8),
        Field(name: "compatible_features", offset: 80, width: 8), Field(name: "autoclear_features", offset: 88, width: 8),
        Field(name: "refcount_order", offset: 96, width: 4), Field(name: "header_length", offset: 100, width: 4),
        Field(name: "compression_type", offset: 104, width: 1),
    ]

    /// Guest data of clusters 0, 2 and 4 (the last stored compressed).
    static let dataA: [UInt8] = (0..<clusterSize).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
    static let dataB = [UInt8](repeating: 0x5A, count: clusterSize)
    static let dataC: [UInt8] = Array(String(repeating: "hostile qcow2 image, compressed cluster. ", count: 100).utf8.prefix(clusterSize))

    /// Bytes of the compressed cluster's data at Offset.compressed.
    static let compressedLength: Int = {
        guard let packed = (try? ZlibCodec().compress(dataC, limit: clusterSize)) ?? nil else {
            preconditionFailure("the text cluster must compress")
        }
        return packed.count
    }()

    var bytes: [UInt8]

    /// The undamaged image, optionally naming a backing file.
    init(backingName: String? = nil) {
        let c = Self.clusterSize
        var header = Qcow2Header(version: 3, clusterBits: 12, size: UInt64(Self.virtualSize))
        header.l1Size = 1
        header.l1TableOffset = UInt64(Offset.l1)
        header.refcountTableOffset = UInt64(Offset.refcountTable)
        header.refcountTableClusters = 1
        header.snapshotCount = 1
        header.snapshotsOffset = UInt64(Offset.snapshots)
        var first = header.encode() + HeaderExtension.encodeAll([.featureNameTable(FeatureName.qemuTable)])
        if let backingName {
            first.setBE(UInt64(first.count), at: 8)
            first.setBE(UInt32(backingName.utf8.count), at: 16)
            first += Array(backingName.utf8)
        }
        var b = [UInt8](repeating: 0, count: Self.fileLength)
        b.replaceSubrange(0..<first.count, with: first)

        b.setBE(UInt64(Offset.refcountBlock), at: Offset.refcountTable)
        for cluster in 0..<(Self.fileLength / c) { b.setBE(UInt16(1), at: Offset.refcountBlock + 2 * cluster) }
        b.setBE(Qcow2EntryMask.copied | UInt64(Offset.l2), at: Offset.l1)

        b.setBE(Qcow2EntryMask.copied | UInt64(Offset.dataA), at: Offset.l2 + 0 * 8)
        b.setBE(Qcow2EntryMask.copied | UInt64(Offset.dataB), at: Offset.l2 + 2 * 8)
        guard let packed = (try? ZlibCodec().compress(Self.dataC, limit: c)) ?? nil else {
            preconditionFailure("the text cluster must compress")
        }
        let descriptor = CompressedClusterDescriptor(hostOffset: UInt64(Offset.compressed), compressedLength: UInt64(packed.count))
        b.setBE(descriptor.entry(clusterBits: 12).rawValue, at: Offset.l2 + 4 * 8)
        b.setBE(Qcow2EntryMask.zero, at: Offset.l2 + 6 * 8)

        b.replaceSubrange(Offset.dataA..<(Offset.dataA + c), with: Self.dataA)
        b.replaceSubrange(Offset.dataB..<(Offset.dataB + c), with: Self.dataB)
        b.replaceSubrange(Offset.compressed..<(Offset.compressed + packed.count), with: packed)

        var snapshot = SnapshotEntry(l1TableOffset: UInt64(Offset.l1), l1Size: 1, id: "1", name: "before",
                                     dateSeconds: 1_700_000_000, vmClockNanoseconds: 1_500_000_000)
        snapshot.diskSize = UInt64(Self.virtualSize)
        let table = SnapshotTable(entries: [snapshot]).encode(virtualSize: UInt64(Self.virtualSize))
        b.replaceSubrange(Offset.snapshots..<(Offset.snapshots + table.count), with: table)
        bytes = b
    }

    /// The guest disk of the undamaged image.
    static let guest: [UInt8] = {
        var g = [UInt8](repeating: 0, count: virtualSize)
        g.replaceSubrange(0..<clusterSize, with: dataA)
        g.replaceSubrange((2 * clusterSize)..<(3 * clusterSize), with: dataB)
        g.replaceSubrange((4 * clusterSize)..<(5 * clusterSize), with: dataC)
        return g
    }()

    /// A copy with `value` stored big-endian in `width` bytes at `offset`.
    func patching(_ value: UInt64, at offset: Int, width: Int = 8) -> HostileImage {
        var copy = self
        for i in 0..<width {
            copy.bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64((width - 1 - i) * 8))
        }
        return copy
    }

    /// What the guest disk must read as after one header field was set, if
    /// the image still opens: unchanged, except that a new size cuts or
    /// extends it (in whole sectors), and a broken magic or a version below 2
    /// makes a probed image raw, as QEMU probes.
    var expectedGuest: [UInt8] {
        if bytes.be(UInt32.self, at: 0) != Qcow2Header.magic || bytes.be(UInt32.self, at: 4) < 2 {
            return bytes + [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
        }
        let size = Int(min(bytes.be(UInt64.self, at: 24) & ~511, 1 << 30))
        var guest = Self.guest
        if size < guest.count { guest.removeLast(guest.count - size) } else {
            guest += [UInt8](repeating: 0, count: size - guest.count)
        }
        return guest
    }

    /// What the guest disk must read as when the file is cut to `length`:
    /// stored data past the end reads as zeroes, as in QEMU. (Metadata past
    /// the end is an error, checked by the readers.) Compressed data cut short
    /// is padded with zeroes too, which may inflate to anything, as in QEMU:
    /// that cluster's range is returned as unknown.
    static func expectedGuest(truncatedTo length: Int) -> (guest: [UInt8], unknown: Range<Int>?) {
        var guest = Self.guest
        for (guestCluster, host) in [(0, Offset.dataA), (2, Offset.dataB)] {
            for i in 0..<clusterSize where host + i >= length { guest[guestCluster * clusterSize + i] = 0 }
        }
        let cut = length < Offset.compressed + compressedLength
        return (guest, cut ? (4 * clusterSize)..<(5 * clusterSize) : nil)
    }
}

/// A fresh directory under /tmp for one test, removed afterwards.
final class HostileScratch {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "qcowkit-hostile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }

    /// Writes `bytes` to `name`, replacing it; returns the path. The old file
    /// is unlinked rather than truncated: ext4 flushes a file that was
    /// truncated and rewritten when it is closed, which costs milliseconds
    /// per file, and the truncation tests write thousands.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = file(name)
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw CocoaError(.fileWriteUnknown) }
        return path
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
