// The persistent dirty bitmaps a qcow2 image lists in its bitmap directory
// (docs/interop/qcow2.txt, "Bitmap directory"): just what `info` shows,
// names, flags and granularity. The directory is untrusted input: every
// entry must lie within the directory the extension declares.
import Qcow2

struct IOBitmapDirectory {
    struct Entry: Equatable {
        var name: String
        var inUse: Bool
        var auto: Bool
        var granularity: UInt64
    }

    /// Fixed part of a directory entry, before its extra data and name.
    private static let entryHeaderSize = 24

    /// The image's bitmaps, in directory order. None unless the bitmaps
    /// extension is present and the autoclear bit vouches for it (QEMU
    /// ignores a stale extension otherwise).
    static func read(_ image: Qcow2Image) throws -> [Entry] {
        guard image.header.version >= 3, image.header.autoclearFeatures.contains(.bitmaps) else { return [] }
        var extensionData: [UInt8]?
        for case let .bitmaps(data) in image.extensions { extensionData = data }
        guard let extensionData else { return [] }
        let ext = try BitmapsExtension(data: extensionData)
        guard ext.directorySize <= Qcow2Limits.maxBitmapDirectorySize else {
            throw Qcow2Error.corruptMetadata("bitmap directory too large")
        }
        let directory = try image.file.readExactly(Int(ext.directorySize), at: ext.directoryOffset,
                                                   step: "reading bitmap directory")
        return try parse(directory, count: Int(ext.bitmapCount))
    }

    /// Decodes `count` entries from the directory's bytes.
    static func parse(_ directory: [UInt8], count: Int) throws -> [Entry] {
        var entries: [Entry] = []
        var position = 0
        for _ in 0..<count {
            guard directory.count - position >= entryHeaderSize else {
                throw Qcow2Error.corruptMetadata("bitmap directory entry out of bounds")
            }
            let flags = BigEndian.load(UInt32.self, from: directory, at: position + 12)
            let granularityBits = directory[position + 17]
            let nameSize = Int(BigEndian.load(UInt16.self, from: directory, at: position + 18))
            let extraSize = Int(BigEndian.load(UInt32.self, from: directory, at: position + 20))
            let nameStart = position + entryHeaderSize + extraSize
            guard granularityBits < 64, extraSize <= directory.count, nameStart <= directory.count - nameSize else {
                throw Qcow2Error.corruptMetadata("bitmap directory entry out of bounds")
            }
            entries.append(Entry(name: String(decoding: directory[nameStart..<nameStart + nameSize], as: UTF8.self),
                                 inUse: flags & 1 != 0, auto: flags & 2 != 0,
                                 granularity: 1 << UInt64(granularityBits)))
            // Entries are padded to a multiple of 8 bytes.
            position = (nameStart + nameSize + 7) & ~7
        }
        return entries
    }
}
