// Copy-on-read prefetch (QEMU's bdrv_co_do_copy_on_readv with
// BDRV_REQ_PREFETCH, what NBD_CMD_CACHE asks for): over the range widened
// to whole clusters, each run the top image does not decide, at most
// MAX_BOUNCE_BUFFER at a time, is read through the backing chain and
// written into the top whole: as a zero write when it reads as zeroes
// (no unmapping), else as data, both as BDRV_REQ_WRITE_UNCHANGED writes that
// mark no dirty bitmap. So a run of backing data followed by zeroes becomes
// data, as in QEMU.

extension BlockImage {
    /// QEMU's MAX_BOUNCE_BUFFER (32768 sectors): the most copied at once.
    package static var copyOnReadChunk: UInt64 { 16 << 20 }

    /// Copies what the backing chain decides in [offset, offset + length)
    /// into this image through `target` (this image, writable). With no
    /// target (a read-only image) runs that read as zeroes are let be and a
    /// run with data throws `Qcow2Error.readOnly` (EPERM), where QEMU's
    /// write to a read-only node fails. Throws what reads and writes throw.
    package func copyOnRead(at offset: UInt64, length: UInt64, into target: WritableBlockImage?) throws {
        guard length > 0, backing != nil else { return }
        let cluster = (self as? Qcow2Image)?.header.clusterSize ?? 512
        let start = offset / cluster * cluster
        let end = Swift.min(size, (offset + length + cluster - 1) / cluster * cluster)
        var position = start
        while position < end {
            let status = try blockStatus(at: position, length: Swift.min(end - position, Self.copyOnReadChunk))
            let run = Swift.min(status.length, Self.copyOnReadChunk, end - position)
            guard run > 0 else { break }
            if !status.isAllocated {
                var data = [UInt8](repeating: 0, count: Int(run))
                try data.withUnsafeMutableBytes { try read(into: $0, at: position) }
                let zero = data.allSatisfy { $0 == 0 }
                if let target {
                    // BDRV_REQ_WRITE_UNCHANGED: the guest sees no change, so
                    // a qcow2 image's bitmaps are not marked.
                    switch (target as? Qcow2Image, zero) {
                    case let (qcow2?, true): try qcow2.writeZeroesUnchanged(at: position, length: run)
                    case let (qcow2?, false): try data.withUnsafeBytes { try qcow2.writeUnchanged($0, at: position) }
                    case (nil, true): try target.writeZeroes(at: position, length: run, mayUnmap: false)
                    case (nil, false): try data.withUnsafeBytes { try target.write($0, at: position) }
                    }
                } else if !zero {
                    throw Qcow2Error.readOnly
                }
            }
            position += run
        }
    }
}
