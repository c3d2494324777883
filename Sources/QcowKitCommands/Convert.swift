// `qcowkit convert`: copies one or more guest disks (through their backing
// chains, end to end) into a target image, as qemu-img 7.2's img_convert:
// its flags, its checks in its order and words, then the copy (ConvertCopy)
// into a new raw or qcow2 image, or into an existing one with -n.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

struct Convert: ParsedVerb {
    var format: String?
    var outputFormat: String?
    /// -o, each occurrence.
    var options: [String] = []
    var compress = false
    var backingFile: String?
    var backingFormat: String?
    var sparseSize: String?
    var noCreate = false
    var targetIsZero = false
    var targetCache = "unsafe"
    var sourceCache = "writeback"
    var outOfOrder = false
    var parallel: String?
    var rateLimit: String?
    var copyOffload = false
    var snapshot: String?
    var bitmaps = false
    var skipBrokenBitmaps = false
    var imageOpts = false
    var targetImageOpts = false
    var salvage = false
    var locking = ImageLocking.standard
    var progress = false
    var quiet = false
    /// The sources, then the target.
    var files: [String] = []

    /// qemu-img convert's command line after the verb, read as img_convert
    /// reads it (VerbGetopt; QEMU 10's long spellings map to the same codes).
    static func parse(_ words: [String]) throws(ExitCode) -> Convert {
        var convert = Convert()
        var options = VerbGetopt("convert", words)
        while let (code, value) = try options.next() {
            switch code {
            case UInt8(ascii: "f"): convert.format = value
            case UInt8(ascii: "O"): convert.outputFormat = value
            case UInt8(ascii: "o"): convert.options.append(value)
            case UInt8(ascii: "c"): convert.compress = true
            case UInt8(ascii: "B"), UInt8(ascii: "b"): convert.backingFile = value
            case UInt8(ascii: "F"): convert.backingFormat = value
            case UInt8(ascii: "S"): convert.sparseSize = value
            case UInt8(ascii: "n"): convert.noCreate = true
            case UInt8(ascii: "t"): convert.targetCache = value
            case UInt8(ascii: "T"): convert.sourceCache = value
            case UInt8(ascii: "W"): convert.outOfOrder = true
            case UInt8(ascii: "m"): convert.parallel = value
            case UInt8(ascii: "r"): convert.rateLimit = value
            case UInt8(ascii: "C"): convert.copyOffload = true
            case UInt8(ascii: "l"): convert.snapshot = value
            case UInt8(ascii: "p"): convert.progress = true
            case UInt8(ascii: "q"): convert.quiet = true
            case QemuImgVerb.forceShare.code: convert.locking = .forceShared
            case QemuImgVerb.imageOpts.code: convert.imageOpts = true
            case 0x90: convert.targetImageOpts = true
            case 0x91: convert.salvage = true
            case 0x92: convert.targetIsZero = true
            case 0x93: convert.bitmaps = true
            case 0x94: convert.skipBrokenBitmaps = true
            default: break
            }
        }
        convert.files = options.operands
        return convert
    }

    func run() throws {
        let snapshot = try self.snapshot.map { try SnapshotParameter($0) }
        var settings = ConvertSettings()
        try parseNumbers(into: &settings)
        for list in options where !CreationOptionSet.isValidList(list) {
            throw CommandFailure("Invalid option list: \(list)")
        }
        if compress && copyOffload { throw CommandFailure("Cannot enable copy offloading when -c is used") }
        if sparseSize != nil && copyOffload { throw CommandFailure("Cannot enable copy offloading when -S is used") }
        if copyOffload && salvage { throw CommandFailure("Cannot use copy offloading in salvaging mode") }
        if noCreate && !options.isEmpty { throw CommandFailure("-o has no effect when skipping image creation") }
        if targetIsZero && !noCreate { throw CommandFailure("--target-is-zero requires use of -n flag") }
        if skipBrokenBitmaps && !bitmaps { throw CommandFailure("Use of --skip-broken-bitmaps requires --bitmaps") }
        if targetImageOpts && !noCreate { throw CommandFailure("--target-image-opts requires use of -n flag") }
        let list = options.isEmpty ? nil : options.joined(separator: ",")
        if let list, CreationOptionSet.wantsHelp(list) {
            let format = outputFormat ?? "raw"
            guard CreationOptionCatalog.descriptors(format: format) != nil else {
                throw CommandFailure("Unknown file format '\(format)'")
            }
            Terminal.print(CreationOptionSet.help(format: format, withFileName: files.count >= 2), terminator: "")
            return
        }
        guard files.count >= 2 else { throw CommandFailure("Must specify image file name") }
        guard CacheMode(qemuName: sourceCache) != nil else {
            throw CommandFailure("Invalid source cache option: \(sourceCache)")
        }
        let progress = QemuProgress(enabled: progress && !quiet, minSkip: 1)
        progress.print(0, max: 100)
        defer { progress.end() }
        try convert(settings, progress: progress, snapshot: snapshot)
        progress.print(100)
    }

    /// -S, -r and -m, with qemu-img's messages.
    private func parseNumbers(into settings: inout ConvertSettings) throws {
        let warn: (String) -> Void = { Terminal.printError(ProgramName.prefixed("warning: " + $0)) }
        if let sparseSize {
            let size = try ImageSizeArgument.parse(sparseSize, name: "buffer size for sparse output", warn: warn)
            let sector = UInt64(ConvertSettings.sectorSize)
            guard size % sector == 0, size / sector <= UInt64(ConvertSettings.maxBufferSectors) else {
                throw CommandFailure("Invalid buffer size for sparse output specified. Valid sizes are multiples of \(sector) "
                    + "up to \(ConvertSettings.maxBufferSectors * ConvertSettings.sectorSize). "
                    + "Select 0 to disable sparse detection (fully allocates output).")
            }
            settings.minSparse = Int(size / sector)
        }
        if let rateLimit {
            settings.rateLimit = try ImageSizeArgument.parse(rateLimit, name: "rate limit", warn: warn)
        }
        if let parallel {
            // qemu_strtol with base 0: decimal, 0x hex or 0 octal, all of it.
            var end: UnsafeMutablePointer<CChar>?
            let value = parallel.withCString { text -> Int? in
                let n = strtol(text, &end, 0)
                return end.map { $0 != UnsafeMutablePointer(mutating: text) && $0.pointee == 0 } == true ? n : nil
            }
            guard let value, (1...ConvertSettings.maxParallel).contains(value) else {
                throw CommandFailure("Invalid number of coroutines. Allowed number of coroutines is between 1 and \(ConvertSettings.maxParallel)")
            }
            settings.parallel = value
        }
        settings.compressed = compress
        settings.inOrder = !outOfOrder
        settings.copyOffload = copyOffload
        settings.salvage = salvage
        settings.targetIsZero = targetIsZero
    }

    /// Opens the sources, makes or opens the target and copies.
    private func convert(_ settings: ConvertSettings, progress: QemuProgress, snapshot: SnapshotParameter?) throws {
        var settings = settings
        let targetPath = files[files.count - 1]
        let outputFormat = outputFormat ?? "raw"
        var images: [BlockImage] = []
        defer { for image in images { try? image.close() } }
        var sourceLocking = locking
        sourceLocking.direct = CacheMode(qemuName: sourceCache)?.wantsDirectIO ?? false
        for path in files.dropLast() {
            images.append(try ReadCommands.openChain(ImageArgument(path, format: format, imageOpts: imageOpts),
                                                     access: VerbAccess.convertSource,
                                                     locking: sourceLocking))
        }
        if let snapshot, let first = images.first {
            if case .byIDOrName = snapshot, images.count > 1 {
                throw CommandFailure("No support for concatenating multiple snapshot")
            }
            try snapshot.load(into: first)
        }
        if bitmaps {
            if images.count > 1 { throw CommandFailure("Copying bitmaps only possible with single source") }
            try convertBitmapsStep { try ConvertBitmaps.check(source: images[0], skipBroken: skipBrokenBitmaps) }
        }
        let sources = ConvertSources(images)

        var backing = backingFile
        var creation: (options: Qcow2CreateOptions, unfitRefcountBits: UInt64?)?
        var rawPreallocation: String?
        if !noCreate {
            switch outputFormat {
            case "raw":
                rawPreallocation = try outputRawPreallocation()
                if backingFile != nil { throw CommandFailure("Backing file not supported for file format 'raw'") }
                if backingFormat != nil { throw CommandFailure("Backing file format not supported for file format 'raw'") }
            case "qcow2":
                let made = try outputQcow2Options()
                backing = made.options.backingFile
                creation = made
            default: throw CommandFailure("Unknown file format '\(outputFormat)'")
            }
        }
        settings.targetHasBacking = backing != nil
        if settings.targetIsZero && settings.targetHasBacking {
            // qemu-img stops here but exits 0 (and completes its progress line).
            Terminal.printError(ProgramName.prefixed("Cannot use --target-is-zero when the destination image has a backing file"))
            return
        }
        if images.count > 1 && backing != nil {
            throw CommandFailure("Having a backing file for the target makes no sense when concatenating multiple input images")
        }
        if let creation, creation.options.backingFile != nil, creation.options.backingFormat == nil {
            throw CommandFailure("Use of backing file requires explicit backing format")
        }
        if compress {
            if !noCreate && outputFormat == "raw" { throw CommandFailure("Compression not supported for this file format") }
            if let preallocation = creation.map({ $0.options.preallocation.rawValue }) ?? rawPreallocation, preallocation != "off" {
                throw CommandFailure("Compression and preallocation not supported at the same time")
            }
        }

        if !noCreate {
            // Refused before anything is created: creating the output would
            // truncate a file the source reads from.
            do {
                for image in images { try RawExport.refuseOutputInChain(image, path: targetPath) }
                if var creation {
                    creation.options.size = UInt64(sources.totalSectors) * UInt64(ConvertSettings.sectorSize)
                    try Qcow2Creator.create(path: targetPath, options: creation.options,
                                            refcountBits: creation.unfitRefcountBits, replacing: true)
                } else {
                    guard let preallocation = Preallocation(rawValue: rawPreallocation ?? "off") else {
                        throw CommandFailure("\(targetPath): error while converting raw: invalid parameter value: \(rawPreallocation ?? "")")
                    }
                    try RawCreator.create(path: targetPath, size: UInt64(sources.totalSectors) * UInt64(ConvertSettings.sectorSize),
                                          preallocation: preallocation, replacing: true)
                }
            } catch let Qcow2Error.creation(error) {
                throw CommandFailure("\(targetPath): error while converting \(outputFormat): \(error)")
            } catch let Qcow2Error.export(failure) {
                throw CommandFailure("\(targetPath): error while converting \(outputFormat): \(failure)")
            } catch let error as Qcow2Error {
                // Another process holds the target (creation's lock bytes).
                guard case .lockConflict = error else { throw error }
                throw CommandFailure("\(targetPath): error while converting \(outputFormat): \(error)")
            }
        }
        guard let cache = CacheMode(qemuName: targetCache) else { throw CommandFailure("Invalid cache option: \(targetCache)") }
        // --target-image-opts: the options name the file and its format (-O
        // is then not used); a target without a driver is taken as -O's.
        let targetArgument = try ImageArgument(targetPath, format: nil, imageOpts: targetImageOpts)
        try targetArgument.checkOpen(writable: true, attachingBacking: true)
        let targetFormatName = targetArgument.format ?? outputFormat
        guard let targetFormat = ImageFormat(rawValue: targetFormatName) else {
            throw CommandFailure("Could not open '\(targetPath)': Unknown driver '\(targetFormatName)'")
        }
        let target: WritableBlockImage
        do {
            target = try ConvertTarget.open(path: targetArgument.path, format: targetFormat, cache: cache)
        } catch {
            throw CommandFailure(ImageOpener.failureMessage(path: targetPath, error: error))
        }
        if noCreate && target.size / UInt64(ConvertSettings.sectorSize) < UInt64(sources.totalSectors) {
            try? target.close()
            throw CommandFailure("output file is smaller than input file")
        }
        if bitmaps {
            do {
                try convertBitmapsStep { try ConvertBitmaps.checkTarget(target) }
            } catch {
                try? target.close()
                throw error
            }
        }
        do {
            try ConvertTarget.prepare(&settings, for: target, isNew: !noCreate, cache: cache)
        } catch {
            try? target.close()
            throw CommandFailure("Compression not supported for this file format")
        }
        let reporter = ConvertReporter(
            progress: { progress.print($0) },
            warning: { [quiet] in if !quiet { Terminal.printError(ProgramName.prefixed("warning: " + $0)) } })
        do {
            try ConvertTarget.finish(target) {
                try ConvertCopy(sources: sources, target: target, settings: settings, reporter: reporter).run()
                if bitmaps {
                    try convertBitmapsStep {
                        try ConvertBitmaps.copy(from: images[0], to: target, skipBroken: skipBrokenBitmaps) {
                            Terminal.printError(ProgramName.prefixed("warning: " + $0))
                        }
                    }
                }
            }
        } catch let Qcow2Error.export(failure) {
            throw CommandFailure("\(failure)")
        } catch {
            throw CommandFailure("\(error)")
        }
    }

    /// A --bitmaps step; its failure is qemu-img's message.
    private func convertBitmapsStep(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let failure as ConvertBitmaps.Failure {
            throw CommandFailure(failure.description)
        }
    }

    /// The -o list for a raw output, read as `create` reads it: only its
    /// preallocation mode matters (the size is the sources'); checked when
    /// the file is created, as QEMU's file driver checks it.
    private func outputRawPreallocation() throws -> String? {
        guard let descriptors = CreationOptionCatalog.descriptors(format: "raw") else {
            throw CommandFailure("Unknown file format 'raw'")
        }
        var opts = CreationOptionSet(descriptors: descriptors)
        for list in options { try opts.parse(list) }
        return opts["preallocation"]?.text
    }

    /// The -o list read as `create` reads it, for a qcow2 output, with -B
    /// and -F as backing_file and backing_fmt (qemu-img's old-style options).
    private func outputQcow2Options() throws -> (options: Qcow2CreateOptions, unfitRefcountBits: UInt64?) {
        guard let descriptors = CreationOptionCatalog.descriptors(format: "qcow2") else {
            throw CommandFailure("Unknown file format 'qcow2'")
        }
        var opts = CreationOptionSet(descriptors: descriptors)
        for list in options { try opts.parse(list) }
        for d in descriptors where d.isUnsupported && opts.isSet(d.name) {
            throw CommandFailure("Option '\(d.name)' is not supported by qcowkit")
        }
        if opts.isSet("size") { throw CommandFailure("Invalid parameter 'size'") }
        if let backingFile { try opts.set("backing_file", backingFile) }
        if let backingFormat { try opts.set("backing_fmt", backingFormat) }
        return try Create.qcow2Options(opts, size: 0)
    }
}
