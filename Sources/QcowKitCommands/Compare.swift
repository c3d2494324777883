// `qcowkit compare`: qemu-img compare. Two guest disks are walked by block
// status through their backing chains; data is read only where a range is
// not zero on both sides, and where one side is unallocated only the other
// is read (it must be all zeroes). Messages and exit codes are qemu-img's:
// 0 identical, 1 different, 2 bad usage or an image that does not open,
// 3 a block-status failure, 4 a read failure. Strict mode (-s) also fails
// on different sizes and on any difference in block status.
import Qcow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum Compare {
    /// How much is read at once (qemu-img's IO_BUF_SIZE).
    static let bufferSize: UInt64 = 2 << 20
    static let sectorSize = 512

    struct Options {
        var formats: (String?, String?) = (nil, nil)
        var progress = false
        var quiet = false
        var strict = false
    }

    /// `argv` starts with the verb's name; returns the exit status.
    static func main(_ argv: [String]) -> Int32 {
        var options = Options()
        var cache = "writeback"
        var locking = ImageLocking.standard
        var imageOpts = false
        let files: [String]
        let parsed = VerbGetopt.parse(argv) { code, value in
            switch code {
            case UInt8(ascii: "f"): options.formats.0 = value
            case UInt8(ascii: "F"): options.formats.1 = value
            case UInt8(ascii: "T"): cache = value
            case UInt8(ascii: "p"): options.progress = true
            case UInt8(ascii: "q"): options.quiet = true
            case UInt8(ascii: "s"): options.strict = true
            case QemuImgVerb.imageOpts.code: imageOpts = true
            case QemuImgVerb.forceShare.code: locking = .forceShared
            default: break
            }
            return nil
        }
        switch parsed {
        case let .exit(status): return status
        case let .operands(operands): files = operands
        }
        if options.quiet { options.progress = false }
        guard files.count == 2 else { return QemuImgFront.errorExit("Expecting two image file names") }
        let progress = QemuProgress(enabled: options.progress, minSkip: 2.0)
        defer { progress.end() }
        var cacheMode = IOOpenOptions()
        guard cacheMode.setCacheMode(cache) else { return QemuImgFront.report("Invalid source cache option: \(cache)", status: 2) }

        let first: BlockImage, second: BlockImage
        do { first = try ReadCommands.openChain(ImageArgument(files[0], format: options.formats.0, imageOpts: imageOpts), locking: locking) } catch {
            return QemuImgFront.report("\(error)", status: 2)
        }
        defer { try? first.close() }
        do { second = try ReadCommands.openChain(ImageArgument(files[1], format: options.formats.1, imageOpts: imageOpts), locking: locking) } catch {
            return QemuImgFront.report("\(error)", status: 2)
        }
        defer { try? second.close() }
        var comparison = Comparison(images: (first, second), names: (files[0], files[1]), options: options)
        let status = comparison.run(progress: progress)
        Terminal.flushStandardOutput()
        return status
    }
}

/// One comparison: qemu-img's img_compare loop after the images are open.
private struct Comparison {
    var images: (BlockImage, BlockImage)
    var names: (String, String)
    var options: Compare.Options
    var buffers = ([UInt8](repeating: 0, count: Int(Compare.bufferSize)),
                   [UInt8](repeating: 0, count: Int(Compare.bufferSize)))

    init(images: (BlockImage, BlockImage), names: (String, String), options: Compare.Options) {
        self.images = images
        self.names = names
        self.options = options
    }

    /// Ends the comparison with a verdict or an error (qemu-img's exit code).
    struct Verdict: Error { var status: Int32 }

    func say(_ line: String) {
        if !options.quiet { Terminal.print(line) }
    }

    mutating func run(progress: QemuProgress) -> Int32 {
        do {
            try compare(progress: progress)
            say("Images are identical.")
            return 0
        } catch let verdict as Verdict {
            return verdict.status
        } catch {
            return QemuImgFront.report("\(error)", status: 2)
        }
    }

    private mutating func compare(progress: QemuProgress) throws {
        let sizes = (images.0.size, images.1.size)
        let common = min(sizes.0, sizes.1)
        let progressBase = Float(max(sizes.0, sizes.1))
        progress.print(0, max: 100)
        if options.strict && sizes.0 != sizes.1 {
            say("Strict mode: Image size mismatch!")
            throw Verdict(status: 1)
        }
        var offset: UInt64 = 0
        while offset < common {
            let status1 = try status(of: images.0, named: names.0, at: offset)
            let status2 = try status(of: images.1, named: names.1, at: offset)
            var chunk = min(status1.length, status2.length)
            if options.strict && status1.flags != status2.flags {
                say("Strict mode: Offset \(offset) block status mismatch!")
                throw Verdict(status: 1)
            }
            if status1.isZero && status2.isZero {
                // Both read as zeroes: nothing to read.
            } else if status1.isAllocated == status2.isAllocated {
                if status1.isAllocated {
                    chunk = min(chunk, Compare.bufferSize)
                    try read(images.0, named: names.0, at: offset, count: chunk, into: \.buffers.0)
                    try read(images.1, named: names.1, at: offset, count: chunk, into: \.buffers.1)
                    if let mismatch = firstDifferentSector(count: Int(chunk)) {
                        say("Content mismatch at offset \(offset + UInt64(mismatch))!")
                        throw Verdict(status: 1)
                    }
                }
            } else {
                chunk = min(chunk, Compare.bufferSize)
                if status1.isAllocated {
                    try checkEmpty(images.0, named: names.0, at: offset, count: chunk)
                } else {
                    try checkEmpty(images.1, named: names.1, at: offset, count: chunk)
                }
            }
            offset += chunk
            progress.print(Float(chunk) / progressBase * 100, max: 100)
        }
        guard sizes.0 != sizes.1 else { return }
        say("Warning: Image size mismatch!")
        let (longer, name) = sizes.0 > sizes.1 ? (images.0, names.0) : (images.1, names.1)
        let end = max(sizes.0, sizes.1)
        while offset < end {
            let status = try status(of: longer, named: name, at: offset)
            var chunk = status.length
            if status.isAllocated && !status.isZero {
                chunk = min(chunk, Compare.bufferSize)
                try checkEmpty(longer, named: name, at: offset, count: chunk)
            }
            offset += chunk
            progress.print(Float(chunk) / progressBase * 100, max: 100)
        }
    }

    /// bdrv_block_status_above over the whole chain, to the image's end.
    private func status(of image: BlockImage, named name: String, at offset: UInt64) throws -> StatusFlags {
        do {
            let chain = try image.chainBlockStatus(at: offset, length: image.size - offset)
            return StatusFlags(chain, image: image, offset: offset)
        } catch {
            _ = QemuImgFront.report("Sector allocation test failed for \(name)", status: 3)
            throw Verdict(status: 3)
        }
    }

    private mutating func read(_ image: BlockImage, named name: String, at offset: UInt64, count: UInt64,
                               into buffer: WritableKeyPath<Comparison, [UInt8]>) throws {
        do {
            try self[keyPath: buffer].withUnsafeMutableBytes { bytes in
                try image.read(into: UnsafeMutableRawBufferPointer(rebasing: bytes[0..<Int(count)]), at: offset)
            }
        } catch {
            let reason = String(cString: strerror(Qcow2Error.errnoValue(of: error)))
            _ = QemuImgFront.report("Error while reading offset \(offset) of \(name): \(reason)", status: 4)
            throw Verdict(status: 4)
        }
    }

    /// check_empty_sectors: the range must read as zeroes; the first sector
    /// that does not is reported.
    private mutating func checkEmpty(_ image: BlockImage, named name: String, at offset: UInt64, count: UInt64) throws {
        try read(image, named: name, at: offset, count: count, into: \.buffers.0)
        let nonzero = buffers.0.withUnsafeBytes { bytes in
            buffers.1.withUnsafeMutableBytes { zeroes -> Int? in
                // The second buffer, zeroed, is the reference sector.
                memset(zeroes.baseAddress!, 0, Compare.sectorSize)
                var sector = 0
                while sector < Int(count) {
                    let length = min(Compare.sectorSize, Int(count) - sector)
                    if memcmp(bytes.baseAddress! + sector, zeroes.baseAddress!, length) != 0 { return sector }
                    sector += length
                }
                return nil
            }
        }
        if let nonzero {
            say("Content mismatch at offset \(offset + UInt64(nonzero))!")
            throw Verdict(status: 1)
        }
    }

    /// compare_buffers: the start of the first 512-byte sector that differs.
    private func firstDifferentSector(count: Int) -> Int? {
        buffers.0.withUnsafeBytes { a in
            buffers.1.withUnsafeBytes { b in
                // Equal chunks (the usual case) take one comparison.
                if memcmp(a.baseAddress!, b.baseAddress!, count) == 0 { return nil }
                var sector = 0
                while sector < count {
                    let length = min(Compare.sectorSize, count - sector)
                    if memcmp(a.baseAddress! + sector, b.baseAddress! + sector, length) != 0 { return sector }
                    sector += length
                }
                return nil
            }
        }
    }
}

/// The flags of QEMU's bdrv_block_status_above for a range, as strict mode
/// compares them: data, zero, offset valid, allocated, end of file.
struct StatusFlags: Equatable {
    static let data: UInt32 = 0x01, zero: UInt32 = 0x02, offsetValid: UInt32 = 0x04
    static let allocated: UInt32 = 0x10, endOfFile: UInt32 = 0x20

    var flags: UInt32
    var length: UInt64

    var isZero: Bool { flags & Self.zero != 0 }
    var isAllocated: Bool { flags & Self.allocated != 0 }

    init(_ chain: ChainBlockStatus, image: BlockImage, offset: UInt64) {
        let status = chain.status
        var flags: UInt32 = 0
        if status.isData { flags |= Self.data }
        if status.isZero { flags |= Self.zero }
        if status.hostOffset != nil { flags |= Self.offsetValid }
        if status.isAllocated { flags |= Self.allocated }
        // Past the end of a shorter backing file the top image reads as
        // zeroes, which QEMU reports as allocated (synthesised at that layer).
        if chain.depth == 0 && !status.isAllocated && status.isZero && image.backing != nil {
            flags |= Self.allocated
        }
        if offset + status.length == image.size { flags |= Self.endOfFile }
        self.flags = flags
        length = status.length
    }
}
