// The source side of a convert: one or more images read as one disk, end to
// end (qemu-img convert a b c out), asked for block status the way qemu-img
// asks, and read with --salvage's fallback to single sectors.

/// Several source images concatenated into one guest disk.
package struct ConvertSources: Sendable {
    static let sector = Int64(ConvertSettings.sectorSize)

    package let images: [BlockImage]
    /// Each image's size in sectors.
    let sectors: [Int64]
    /// Each image's status alignment in sectors: its cluster size, so that
    /// runs end on cluster boundaries and no cluster is read twice.
    let alignments: [Int64]
    /// The disk's size in sectors.
    package let totalSectors: Int64

    package init(_ images: [BlockImage]) {
        self.images = images
        sectors = images.map { Int64($0.size / UInt64(ConvertSources.sector)) }
        alignments = images.map { image in
            guard let qcow2 = image as? Qcow2Image else { return 1 }
            return max(1, Int64(qcow2.header.clusterSize) / ConvertSources.sector)
        }
        totalSectors = sectors.reduce(0, +)
    }

    /// The image holding `sector` and the sector its first one has on the disk
    /// (convert_select_part).
    func part(of sector: Int64) -> (index: Int, start: Int64) {
        var index = 0, start: Int64 = 0
        while index < sectors.count - 1 && sector - start >= sectors[index] {
            start += sectors[index]
            index += 1
        }
        return (index, start)
    }

    /// The status of `image`'s run at byte `offset` (at most `length`): of
    /// its whole chain, or of the top image alone when the target has a
    /// backing of its own (what the source's backing holds is assumed to be
    /// there already).
    func blockStatus(_ image: BlockImage, at offset: UInt64, length: UInt64, topOnly: Bool) throws -> BlockStatus {
        if topOnly && image.backing != nil { return try image.blockStatus(at: offset, length: length) }
        return try image.chainBlockStatus(at: offset, length: length).status
    }

    /// Reads `count` sectors of the disk at `sector` into `buffer`, across
    /// image boundaries (convert_co_read). With `salvage`, a failed read is
    /// retried sector by sector and unreadable sectors become zeroes, each
    /// reported to `warn`. Throws the read error otherwise.
    func read(into buffer: UnsafeMutableRawBufferPointer, sector: Int64, count: Int64, salvage: Bool,
              warn: (String) -> Void) throws {
        var sector = sector, remaining = count, position = 0
        var singleReadUntil: UInt64 = 0
        while remaining > 0 {
            let (index, start) = part(of: sector)
            let image = images[index]
            let offset = UInt64(sector - start) * UInt64(ConvertSources.sector)
            var n = min(remaining, sectors[index] - (sector - start))
            if singleReadUntil > offset { n = 1 }
            let bytes = Int(n * ConvertSources.sector)
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[position..<(position + bytes)])
            do {
                try image.read(into: chunk, at: offset)
            } catch {
                guard salvage else { throw error }
                if n > 1 {
                    singleReadUntil = offset + UInt64(bytes)
                    continue
                }
                warn("error while reading offset \(offset): \(Qcow2Error.reason(of: error))")
                chunk.initializeMemory(as: UInt8.self, repeating: 0)
            }
            sector += n
            remaining -= n
            position += bytes
        }
    }
}
