// A raw image: the guest disk is the file, byte for byte. Its size is the
// file's length rounded up to a whole sector (the tail reads as zeroes), and
// its block status is the file's own data/hole layout.

public final class RawImage: BlockImage, @unchecked Sendable {
    public let file: BlockFile
    public let size: UInt64
    public var format: ImageFormat { .raw }
    public var filename: String { file.path }
    public var backing: BlockImage? { nil }

    public init(file: BlockFile) throws {
        self.file = file
        size = try file.sectorRoundedSize()
    }

    public static func open(path: String, writable: Bool = false) throws -> RawImage {
        try RawImage(file: BlockFile(path: path, writable: writable))
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, buffer.count)
        // Past the end of the file (the sector-rounding tail), reads give zeroes.
        try file.read(into: buffer, at: offset)
    }

    public func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        try checkStatusQuery(offset, length)
        let extent = file.extent(at: offset, length: length, totalSize: size)
        return BlockStatus(length: extent.length, isData: extent.isData, isZero: !extent.isData,
                           isAllocated: true, hostOffset: offset, hostFile: file.path)
    }

    public func close() throws {
        try file.close()
    }
}
