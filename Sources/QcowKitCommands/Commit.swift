// `qcowkit commit`: qemu-img 7.2's img_commit. Like qemu-img, it runs the
// block layer's active commit job (BlockGraph's ActiveCommitDriver, the job
// `block-commit` starts over QMP) to completion on a private job manager,
// with -r as the job's speed: what the layers from the image down to base's
// overlay allocate is copied into base (the immediate backing file, or -b's
// image further down), base grown first when it is shorter. Then, unless -d
// (which -b implies), the image is emptied (qcow2_make_empty).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BlockGraph
import Qcow2
import Synchronization

package enum Commit {
    /// `arguments` follow the verb: options and the image.
    static func run(_ arguments: [String]) throws {
        var format: String?
        var cache = "writeback"
        var base: String?
        var drop = false
        var showProgress = false
        var quiet = false
        var rate: Int64 = 0
        var imageOpts = false
        var getopt = VerbGetopt("commit", arguments)
        while let (option, argument) = try getopt.next() {
            switch option {
            case UInt8(ascii: "f"): format = argument
            case UInt8(ascii: "t"): cache = argument
            case QemuImgVerb.imageOpts.code: imageOpts = true
            case UInt8(ascii: "b"):
                base = argument
                drop = true  // -b implies -d
            case UInt8(ascii: "d"): drop = true
            case UInt8(ascii: "p"): showProgress = true
            case UInt8(ascii: "q"): quiet = true
            case UInt8(ascii: "r"):
                rate = Int64(try ImageSizeArgument.parse(argument, name: "rate limit") {
                    Terminal.printError(ProgramName.prefixed("warning: " + $0))
                })
            default: break
            }
        }
        guard getopt.operands.count == 1 else { throw VerbGetopt.usageError("Expecting one image file name") }
        let operand = try ImageArgument(getopt.operands[0], format: format, imageOpts: imageOpts)
        let filename = operand.path
        format = operand.format
        let cacheMode = try CacheModeArgument.check(cache)

        // img_open, for its messages; the job opens the chain again below.
        // Bitmaps this open marked in use are put back as they were, so
        // that the image's bitmaps are stored once, after the emptying, as
        // qemu-img's one open stores them.
        let image = try ImageVerbs.openWritable(operand, cache: cacheMode)
        let progress = QemuProgress(enabled: showProgress && !quiet, minSkip: 1)
        progress.print(0, max: 100)
        let baseImage: BlockImage
        do {
            defer {
                try? (image as? Qcow2Image)?.putBackUnchangedBitmaps()
                try? image.close()
            }
            if let base {
                guard let found = BackingChain.find(named: base, below: image) else {
                    progress.end()
                    throw CommandFailure("Did not find '\(base)' in the backing chain of '\(operand.text)'")
                }
                baseImage = found
            } else {
                guard let backing = image.backing else {
                    progress.end()
                    throw CommandFailure("Image does not have a backing file")
                }
                baseImage = backing
            }
        }
        let baseFilename = baseImage.filename

        do {
            try commit(filename: filename, format: format, baseFilename: baseFilename, drop: drop, speed: rate,
                       direct: operand.cacheDirect ?? cacheMode.wantsDirectIO,
                       noFlush: operand.noFlush ?? cacheMode.ignoresFlushes) {
                progress.print($0, max: 0)
            }
        } catch let failure as CommandFailure {
            progress.end()
            throw failure
        }
        progress.end()
        if !quiet { Terminal.print("Image committed.") }
    }

    /// The commit once the command line is read: the job (which makes
    /// what it copied into base durable before it completes), then, unless
    /// `drop`, the emptying of the image. `observer` is told of every change
    /// to the files of both steps (power-loss tests).
    package static func commit(filename: String, format: String?, baseFilename: String, drop: Bool, speed: Int64,
                               direct: Bool, noFlush: Bool = false, observer: (any BlockFileObserver)? = nil,
                               progress: (Float) -> Void) throws {
        try CommitJob.run(filename: filename, format: format, baseFilename: baseFilename, speed: speed, direct: direct,
                          noFlush: noFlush, empty: !drop, observer: observer, progress: progress)
    }
}

/// Runs an active commit to completion, as qemu-img's run_block_job does:
/// the job's worker thread copies while this thread plays the main loop,
/// completes the job once it is ready, and reports progress (percent).
enum CommitJob {
    /// `empty`: then blk_make_empty on the committed image, still open (a
    /// format that cannot be emptied, raw, is left as it is, as qemu-img does).
    /// `noFlush` (-t unsafe): no file of the chain is ever synced.
    static func run(filename: String, format: String?, baseFilename: String, speed: Int64, direct: Bool,
                    noFlush: Bool = false, empty: Bool, observer: (any BlockFileObserver)? = nil, progress: (Float) -> Void) throws {
        let graph = BlockGraph()
        graph.fileObserver = observer
        defer { try? graph.closeAll() }
        let top: BlockNode
        do {
            var drive = BlockdevOptions(driver: format, file: .filename(filename))
            drive.cacheDirect = direct
            drive.cacheNoFlush = noFlush
            top = try graph.addDrive(drive, id: "commit")
            // qemu-img's BlockBackend on the image: it stays open after the
            // job has replaced it with base, to be emptied.
            graph.hold(top)
        } catch {
            throw CommandFailure("Could not open '\(filename)': \(error)")
        }
        var base = top.backing
        while let node = base, node.filename != baseFilename { base = node.backing }
        guard let base else { throw CommandFailure("Did not find '\(baseFilename)' in the backing chain of '\(filename)'") }

        let scheduler = PumpedScheduler()
        let failure = Mutex<String?>(nil)
        let manager = JobManager(scheduler: scheduler) { event in
            if case let .blockJobCompleted(data) = event, let error = data.error {
                failure.withLock { $0 = error }
            }
        }
        do {
            let driver = try graph.makeCommitDriver(CommitRequest(device: "commit", baseNode: base.nodeName))
            let job = try manager.startBlockJob(id: "commit", driver: driver, speed: speed)
            var completed = false
            while true {
                scheduler.waitAndPump(milliseconds: 100)
                let total = job.totalProgress
                progress(total == 0 ? 0 : Float(job.currentProgress) / Float(total) * 100)
                let status = job.status
                if status == .concluded || status == .null { break }
                if status == .ready && !completed {
                    try manager.complete(id: "commit")
                    completed = true
                }
            }
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure("\(error)")
        }
        if let error = failure.withLock({ $0 }) { throw CommandFailure("Block job failed: \(error)") }
        progress(100)
        if empty, let qcow2 = top.qcow2 {
            do {
                try qcow2.makeEmpty()
            } catch {
                throw CommandFailure("Could not empty \(filename): \(Qcow2Error.reason(of: error))")
            }
        }
    }
}
