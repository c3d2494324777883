// Reading an image's first cluster: the fixed header says how large a cluster
// is, so it is decoded from a small prefix first, then again from the whole
// cluster (which holds the extensions and the backing file name).

extension Qcow2Header {
    /// Reads and decodes the header and the first cluster of `file`
    /// (shorter when the file is).
    static func readFirstCluster(of file: BlockFile, fileSize: UInt64) throws -> (header: Qcow2Header, firstCluster: [UInt8]) {
        let prefix = try file.readExactly(Int(min(fileSize, 4096)), at: 0, step: "reading qcow2 header")
        let decoded = try Qcow2Header.decode(prefix)
        let length = Int(min(decoded.clusterSize, fileSize))
        let firstCluster = length <= prefix.count
            ? Array(prefix.prefix(length))
            : try file.readExactly(length, at: 0, step: "reading qcow2 header")
        return (try Qcow2Header.decode(firstCluster), firstCluster)
    }
}
