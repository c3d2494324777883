// An open qcow2 image: the validated header, its extensions and the file.
// The mapping (L1/L2), refcount and I/O code live in extensions beside this
// file, one concept each.

public final class Qcow2Image: @unchecked Sendable {
    public let file: BlockFile
    public private(set) var header: Qcow2Header
    public private(set) var extensions: [HeaderExtension]
    /// The backing file name exactly as stored in the header (not resolved).
    public private(set) var backingFileName: String?
    public var isWritable: Bool { file.isWritable }

    /// The backing format named by the header extension, if any.
    public var backingFormat: String? {
        for case let .backingFormat(f) in extensions { return f }
        return nil
    }

    /// Opens and validates an image. Reads only the first cluster; tables are
    /// read on demand by the mapping code.
    public static func open(path: String, writable: Bool = false) throws -> Qcow2Image {
        let file = try BlockFile(path: path, writable: writable)
        return try Qcow2Image(file: file)
    }

    public init(file: BlockFile) throws {
        self.file = file
        let fileSize = try file.size()
        // The fixed header first, then the whole first cluster it describes.
        let prefix = try file.readExactly(Int(min(fileSize, 4096)), at: 0, step: "reading qcow2 header")
        let decoded = try Qcow2Header.decode(prefix)
        let firstClusterLength = Int(min(decoded.clusterSize, fileSize))
        let firstCluster = firstClusterLength <= prefix.count
            ? Array(prefix.prefix(firstClusterLength))
            : try file.readExactly(firstClusterLength, at: 0, step: "reading qcow2 header")
        let header = try Qcow2Header.decode(firstCluster)
        let layout = try HeaderValidation.validate(
            header: header, firstCluster: firstCluster, fileSize: fileSize, writable: file.isWritable)
        self.header = layout.header
        self.extensions = layout.extensions
        self.backingFileName = layout.backingFileName
    }

    public func close() throws {
        try file.close()
    }
}
