// Where an image file's metadata lies, as the codec's own decoders read it
// (Qcow2Header, HeaderValidation, SnapshotTable, BitmapsExtension), for the
// `write` target's "guest data never lands on metadata" check. The areas are
// the ones QEMU's default overlap check guards ("cached" mode): the header
// cluster, the active L1 table and its L2 tables, the refcount table and its
// blocks, the snapshot table and the snapshots' L1 tables, the bitmap
// directory. The snapshots' L2 tables are left out on purpose: that mode
// does not guard them either, and an image whose refcounts call one free is
// corrupt in a way only a full check can see.

@testable import Qcow2

public struct MetadataRanges {
    public struct Area {
        public var name: String
        public var range: Range<UInt64>
    }

    public private(set) var areas: [Area] = []
    public let clusterSize: UInt64

    /// The areas of the image in `file`; nil when its header does not decode
    /// or validate (the codec would not open it). Tables are read only as far
    /// as the file holds them (the rest reads as zeroes, as in the codec).
    public init?(file: BlockFile) {
        guard let fileSize = try? file.size(),
              let prefix = Self.read(file, at: 0, count: min(fileSize, 4096)),
              let decoded = try? Qcow2Header.decode(prefix),
              let firstCluster = Self.read(file, at: 0, count: min(decoded.clusterSize, fileSize)),
              let header = try? Qcow2Header.decode(firstCluster),
              let layout = try? HeaderValidation.validate(
                  header: header, firstCluster: firstCluster, fileSize: fileSize, writable: false) else { return nil }
        let h = layout.header
        clusterSize = h.clusterSize

        add("header", 0, clusterSize)
        add("active L1", h.l1TableOffset, UInt64(h.l1Size) * 8)
        for entry in Self.entries(file, fileSize, at: h.l1TableOffset, count: UInt64(h.l1Size)) {
            let offset = entry & Qcow2EntryMask.offset
            if offset != 0 { add("active L2", offset, clusterSize) }
        }
        let tableBytes = UInt64(h.refcountTableClusters) * clusterSize
        add("refcount table", h.refcountTableOffset, tableBytes)
        for entry in Self.entries(file, fileSize, at: h.refcountTableOffset, count: tableBytes / 8) {
            let offset = entry & Qcow2EntryMask.refcountTableOffset
            if offset != 0 { add("refcount block", offset, clusterSize) }
        }
        if h.snapshotCount > 0,
           let table = try? SnapshotTable.read(file: file, offset: h.snapshotsOffset, count: h.snapshotCount) {
            add("snapshot table", h.snapshotsOffset, table.byteLength)
            for entry in table.entries { add("inactive L1", entry.l1TableOffset, UInt64(entry.l1Size) * 8) }
        }
        if let bitmaps = layout.bitmaps { add("bitmap directory", bitmaps.directoryOffset, bitmaps.directorySize) }
    }

    private static func read(_ file: BlockFile, at offset: UInt64, count: UInt64) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: Int(count))
        guard (try? bytes.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }) != nil else { return nil }
        return bytes
    }

    /// Big-endian 64-bit entries of a table at `offset`, as far as the file
    /// holds them (the tables were validated: 32 MiB at most).
    private static func entries(_ file: BlockFile, _ fileSize: UInt64, at offset: UInt64, count: UInt64) -> [UInt64] {
        guard offset < fileSize else { return [] }
        let inFile = min(count, (fileSize - offset) / 8)
        guard inFile > 0, let bytes = read(file, at: offset, count: inFile * 8) else { return [] }
        return bytes.withUnsafeBytes { raw in
            (0..<Int(inFile)).map { UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
    }

    private mutating func add(_ name: String, _ offset: UInt64, _ length: UInt64) {
        guard length > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(length)
        areas.append(Area(name: name, range: offset..<(overflow ? .max : end)))
    }

    /// The first area (in the order found) that contains `offset`.
    public func area(containing offset: UInt64) -> Area? {
        areas.first { $0.range.contains(offset) }
    }

    /// The areas merged into sorted, disjoint ranges, cut at `limit`.
    public func merged(upTo limit: UInt64) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        for range in areas.map(\.range).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            guard range.lowerBound < limit else { break }
            let cut = range.lowerBound..<min(range.upperBound, limit)
            if let last = result.last, cut.lowerBound <= last.upperBound {
                result[result.count - 1] = last.lowerBound..<max(last.upperBound, cut.upperBound)
            } else {
                result.append(cut)
            }
        }
        return result
    }
}
