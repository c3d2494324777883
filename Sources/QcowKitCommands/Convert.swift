// `qcowkit convert`: copies one or more guest disks (through their backing
// chains, end to end) into a target image, as qemu-img 7.2's img_convert:
// its flags, its checks in its order and words, then the copy (ConvertCopy)
// into a new raw or qcow2 image, or into an existing one with -n.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import Qcow2

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert the disk image(s) FILENAME... to disk image OUTPUT_FILENAME.")

    @Option(name: [.customShort("f"), .customLong("source-format")], help: "The source image format (qcow2 or raw); probed when omitted.")
    var format: String?

    @Option(name: [.customShort("O"), .customLong("target-format")], help: "The output format: raw (default) or qcow2.")
    var outputFormat: String?

    @Option(name: [.customShort("o"), .customLong("target-format-options")], help: "Output format options, as for create: key=value,... (repeatable).")
    var options: [String] = []

    @Flag(name: [.customShort("c"), .customLong("compress")], help: "Compress the output (qcow2 only): every data cluster is written compressed.")
    var compress = false

    @Option(name: [.customShort("B"), .customShort("b"), .customLong("backing")],
            help: "Create the target on top of BACKING_FILE: only what the source's top image holds is written.")
    var backingFile: String?

    @Option(name: [.customShort("F"), .customLong("backing-format")], help: "The backing file's format (required with -B).")
    var backingFormat: String?

    @Option(name: [.customShort("S"), .customLong("sparse-size")], help: "Zero runs at least this long are left unwritten (default 4k; 0 writes everything).")
    var sparseSize: String?

    @Flag(name: [.customShort("n"), .customLong("no-create")], help: "Write into the existing target instead of creating it.")
    var noCreate = false

    @Flag(name: .customLong("target-is-zero"), help: "The target (with -n) reads as zeroes already: zero ranges are skipped.")
    var targetIsZero = false

    @Option(name: [.customShort("t"), .customLong("target-cache")], help: "Target cache mode: none, writeback, writethrough, directsync, unsafe (default).")
    var targetCache = "unsafe"

    @Option(name: [.customShort("T"), .customLong("source-cache")], help: "Source cache mode (default writeback).")
    var sourceCache = "writeback"

    @Flag(name: [.customShort("W"), .customLong("oob-writes")], help: "Allow out-of-order writes (the content is the same, the layout may differ).")
    var outOfOrder = false

    @Option(name: [.customShort("m"), .customLong("parallel")], help: "Requests in flight at once, 1 to 16 (default 8).")
    var parallel: String?

    @Option(name: [.customShort("r"), .customLong("rate-limit")], help: "Write at most RATE bytes per second.")
    var rateLimit: String?

    @Flag(name: [.customShort("C"), .customLong("copy-range-offloading")], help: "Copy data in the kernel (copy_file_range) where both sides are raw files.")
    var copyOffload = false

    @Option(name: [.customShort("l"), .customLong("snapshot")], help: "Convert an internal snapshot: ID or name, or snapshot.id=ID,snapshot.name=NAME.")
    var snapshot: String?

    @Flag(name: .customLong("bitmaps"), help: "Copy the source's persistent dirty bitmaps to the qcow2 target.")
    var bitmaps = false

    @Flag(name: .customLong("skip-broken-bitmaps"), help: "With --bitmaps: leave out bitmaps marked in use, with a warning.")
    var skipBrokenBitmaps = false

    @Flag(name: .customLong("image-opts"), help: "Each source is QEMU's block options (driver=qcow2,file.filename=PATH,...).")
    var imageOpts = false

    @Flag(name: .customLong("target-image-opts"), help: "The target (with -n) is QEMU's block options.")
    var targetImageOpts = false

    @Flag(name: .customLong("salvage"), help: "Convert what can be read: unreadable sectors become zeroes, with a warning each.")
    var salvage = false

    @OptionGroup var sharing: ForceShareOption

    @Flag(name: [.customShort("p"), .customLong("progress")], help: "Show progress.")
    var progress = false

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Quiet: print nothing but errors.")
    var quiet = false

    @OptionGroup var objectOptions: ObjectOptions

    @Argument(help: "The source images, then the target.")
    var files: [String] = []

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
        var sourceLocking = sharing.locking
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
