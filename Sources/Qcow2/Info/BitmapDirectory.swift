// The persistent dirty bitmaps' directory (docs/interop/qcow2.txt, "Bitmaps
// extension" and "Bitmap directory"), read only as far as info needs: names,
// granularities and flags. The codec carries bitmaps unchanged; this checks
// them as QEMU does when it opens an image, with QEMU's messages, so that an
// image QEMU refuses is refused here too.
//
// Extension payload (24 bytes): nb_bitmaps (4), reserved (4),
// bitmap_directory_size (8), bitmap_directory_offset (8).
// Directory entry: bitmap_table_offset (8), bitmap_table_size (4), flags (4),
// type (1), granularity_bits (1), name_size (2), extra_data_size (4), extra
// data, name, padding to 8 bytes.

enum BitmapDirectory {
    /// QEMU's limits: bitmaps per image, directory bytes, one entry's fields.
    static let maxBitmaps: UInt32 = 65535
    static let maxDirectorySize: UInt64 = 1024 * 65535
    static let maxTableSize: UInt32 = 0x800_0000
    static let maxPhysicalSize: UInt64 = 0x2000_0000
    static let granularityRange: ClosedRange<UInt8> = 9...31
    static let maxNameSize: UInt16 = 1023
    static let entryHeaderSize = 24
    static let flagInUse: UInt32 = 1 << 0
    static let flagAuto: UInt32 = 1 << 1
    static let dirtyTrackingType: UInt8 = 1

    /// The bitmaps of an open image: nil when it has none (or when they are
    /// ignored because a program without bitmap support touched the image,
    /// which `warnings` then says).
    static func read(image: Qcow2Image, warnings: inout [ImageInfoWarning]) throws -> [BitmapInfo]? {
        guard let payload = image.extensions.lazy.compactMap({ ext -> [UInt8]? in
            if case let .bitmaps(data) = ext { return data }
            return nil
        }).first else { return nil }

        guard payload.count == 24 else { throw Qcow2Error.invalidBitmaps("bitmaps_ext: Invalid extension length") }
        guard image.header.autoclearFeatures.contains(.bitmaps) else {
            warnings.append(.bitmapsInconsistent(versionTwo: image.header.version < 3))
            return nil
        }
        guard payload.be(UInt32.self, at: 4) == 0 else {
            throw Qcow2Error.invalidBitmaps("bitmaps_ext: Reserved field is not zero")
        }
        let count = payload.be(UInt32.self, at: 0)
        let size = payload.be(UInt64.self, at: 8)
        let offset = payload.be(UInt64.self, at: 16)
        guard count <= maxBitmaps else {
            throw Qcow2Error.invalidBitmaps(
                "bitmaps_ext: Image has \(count) bitmaps, exceeding the QEMU supported maximum of \(maxBitmaps)")
        }
        guard count > 0 else { throw Qcow2Error.invalidBitmaps("found bitmaps extension with zero bitmaps") }
        guard offset % image.header.clusterSize == 0 else {
            throw Qcow2Error.invalidBitmaps("bitmaps_ext: invalid bitmap directory offset")
        }
        guard size <= maxDirectorySize else {
            throw Qcow2Error.invalidBitmaps(
                "bitmaps_ext: bitmap directory size (\(size)) exceeds the maximum supported size (\(maxDirectorySize))")
        }
        guard size > 0 else { throw Qcow2Error.invalidBitmaps("Requested bitmap directory size is zero") }
        let fileSize = try image.file.size()
        guard offset <= fileSize, size <= fileSize - offset else {
            throw Qcow2Error.invalidBitmaps("Failed to read bitmap directory")
        }
        let directory = try image.file.readExactly(Int(size), at: offset, step: "reading bitmap directory")
        return try decode(directory, count: count, clusterSize: image.header.clusterSize,
                          virtualSize: image.header.size & ~511)
    }

    /// Walks the directory's entries, checking each as QEMU does.
    static func decode(_ dir: [UInt8], count: UInt32, clusterSize: UInt64, virtualSize: UInt64) throws -> [BitmapInfo] {
        var bitmaps: [BitmapInfo] = []
        var p = 0
        while p < dir.count {
            guard dir.count - p >= entryHeaderSize else { throw Qcow2Error.invalidBitmaps("Broken bitmap directory") }
            guard bitmaps.count < Int(count) else {
                throw Qcow2Error.invalidBitmaps("More bitmaps found than specified in header extension")
            }
            let tableOffset = dir.be(UInt64.self, at: p)
            let tableSize = dir.be(UInt32.self, at: p + 8)
            let flags = dir.be(UInt32.self, at: p + 12)
            let type = dir[p + 16]
            let granularityBits = dir[p + 17]
            let nameSize = dir.be(UInt16.self, at: p + 18)
            let extraSize = dir.be(UInt32.self, at: p + 20)
            let entrySize = (UInt64(entryHeaderSize) + UInt64(extraSize) + UInt64(nameSize) + 7) & ~7
            guard entrySize <= UInt64(dir.count - p) else { throw Qcow2Error.invalidBitmaps("Broken bitmap directory") }
            guard extraSize == 0 else { throw Qcow2Error.invalidBitmaps("Bitmap extra data is not supported") }
            let nameStart = p + entryHeaderSize
            let name = String(decoding: dir[nameStart..<nameStart + Int(nameSize)], as: UTF8.self)

            var valid = tableSize != 0 && tableOffset != 0 && tableOffset % clusterSize == 0
                && tableSize <= maxTableSize && granularityRange.contains(granularityBits)
                && flags & ~(flagInUse | flagAuto) == 0 && nameSize <= maxNameSize && type == dirtyTrackingType
            if valid {
                // The table must be able to cover the disk, unless the bitmap
                // is marked in use (it may predate a resize).
                let physicalBytes = UInt64(tableSize) * clusterSize
                if physicalBytes > maxPhysicalSize {
                    valid = false
                } else if flags & flagInUse == 0 && virtualSize > (physicalBytes * 8) << UInt64(granularityBits) {
                    valid = false
                }
            }
            guard valid else { throw Qcow2Error.invalidBitmaps("Bitmap '\(name)' doesn't satisfy the constraints") }

            var infoFlags: [BitmapInfo.Flag] = []
            if flags & flagInUse != 0 { infoFlags.append(.inUse) }
            if flags & flagAuto != 0 { infoFlags.append(.auto) }
            bitmaps.append(BitmapInfo(name: name, granularity: UInt32(1) << UInt32(granularityBits), flags: infoFlags))
            p += Int(entrySize)
        }
        guard bitmaps.count == Int(count) else {
            throw Qcow2Error.invalidBitmaps("Less bitmaps found than specified in header extension")
        }
        return bitmaps
    }
}
