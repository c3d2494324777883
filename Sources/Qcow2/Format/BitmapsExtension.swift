// The bitmaps header extension (docs/interop/qcow2.txt, "Bitmaps extension"):
// where the persistent dirty bitmaps' directory is, checked as QEMU checks it
// on open so that the same images are refused (the bitmaps themselves:
// Sources/Qcow2/Bitmaps).

package struct BitmapsExtension: Equatable, Sendable {
    package var bitmapCount: UInt32
    /// Must be zero.
    package var reserved: UInt32
    package var directorySize: UInt64
    package var directoryOffset: UInt64

    package init(bitmapCount: UInt32, directorySize: UInt64, directoryOffset: UInt64, reserved: UInt32 = 0) {
        self.bitmapCount = bitmapCount
        self.reserved = reserved
        self.directorySize = directorySize
        self.directoryOffset = directoryOffset
    }

    /// Decodes the extension's data; it must be exactly 24 bytes.
    package init(data: [UInt8]) throws {
        guard data.count == Int(Qcow2Limits.bitmapsExtensionLength) else {
            throw Qcow2Error.invalidHeaderExtension("bitmaps_ext: Invalid extension length")
        }
        bitmapCount = data.be(UInt32.self, at: 0)
        reserved = data.be(UInt32.self, at: 4)
        directorySize = data.be(UInt64.self, at: 8)
        directoryOffset = data.be(UInt64.self, at: 16)
    }

    package func encode() -> [UInt8] {
        var data = [UInt8](repeating: 0, count: Int(Qcow2Limits.bitmapsExtensionLength))
        data.setBE(bitmapCount, at: 0)
        data.setBE(reserved, at: 4)
        data.setBE(directorySize, at: 8)
        data.setBE(directoryOffset, at: 16)
        return data
    }

    /// QEMU's checks on open, in its order: reserved field, bitmap count
    /// (1...65535), directory alignment, directory size.
    package func validate(clusterSize: UInt64) throws {
        guard reserved == 0 else { throw Qcow2Error.invalidHeaderExtension("bitmaps_ext: Reserved field is not zero") }
        guard bitmapCount <= Qcow2Limits.maxBitmaps else {
            throw Qcow2Error.invalidHeaderExtension(
                "bitmaps_ext: Image has \(bitmapCount) bitmaps, exceeding the QEMU supported maximum of \(Qcow2Limits.maxBitmaps)")
        }
        guard bitmapCount > 0 else { throw Qcow2Error.invalidHeaderExtension("found bitmaps extension with zero bitmaps") }
        guard directoryOffset % clusterSize == 0 else {
            throw Qcow2Error.invalidHeaderExtension("bitmaps_ext: invalid bitmap directory offset")
        }
        guard directorySize <= Qcow2Limits.maxBitmapDirectorySize else {
            throw Qcow2Error.invalidHeaderExtension(
                "bitmaps_ext: bitmap directory size (\(directorySize)) exceeds the maximum supported size (\(Qcow2Limits.maxBitmapDirectorySize))")
        }
    }
}
