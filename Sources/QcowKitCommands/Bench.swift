// `qcowkit bench`: qemu-img bench. COUNT requests of SIZE bytes (reads, or
// writes of the pattern byte with -w) at OFFSET, OFFSET + STEP, ... (wrapping
// at the image's end), DEPTH of them in flight at once: DEPTH worker threads
// share the open image (reads and writes are thread-safe), each taking the
// next request as soon as its last one completes, as qemu-img's callbacks
// refill its queue. --flush-interval flushes when the number of requests not
// yet sent is a multiple of the interval, after draining the queue unless
// --no-drain. The lines printed are qemu-img's.
import BlockGraph
import Qcow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum Bench {
    struct Settings {
        var count: UInt64 = 75000
        var depth: UInt64 = 64
        var offset: UInt64 = 0
        var bufferSize: UInt64 = 4096
        var step: UInt64 = 0
        var pattern: UInt8 = 0
        var flushInterval: UInt64 = 0
        var drainOnFlush = true
        var write = false
        var writethrough = false
    }

    /// Buffers beyond this (DEPTH buffers of SIZE bytes) are refused rather
    /// than allocated.
    static let maxBufferBytes: UInt64 = 1 << 30

    /// `argv` starts with the verb's name; returns the exit status.
    static func main(_ argv: [String]) -> Int32 {
        var settings = Settings()
        var format: String?
        var cache = IOOpenOptions()
        var nativeAIO = false
        let operands: [String]
        var locking = ImageLocking.standard
        var imageOpts = false
        let parsed = VerbGetopt.parse(argv) { code, value in
            do {
                switch code {
                case UInt8(ascii: "c"):
                    guard let n = NumberArgument.unsignedLong(value), n <= UInt64(Int32.max) else {
                        return QemuImgFront.report("Invalid request count specified")
                    }
                    settings.count = n
                case UInt8(ascii: "d"):
                    // Depth 0 would wait for ever (qemu-img hangs): refused as invalid.
                    guard let n = NumberArgument.unsignedLong(value), n <= UInt64(Int32.max), n > 0 else {
                        return QemuImgFront.report("Invalid queue depth specified")
                    }
                    settings.depth = n
                case UInt8(ascii: "f"): format = value
                case UInt8(ascii: "n"): nativeAIO = true
                case UInt8(ascii: "i"):
                    guard IOOpenOptions.isKnownAIOMode(value) else { return QemuImgFront.report("Invalid aio option: \(value)") }
                    nativeAIO = value == "native"
                case UInt8(ascii: "o"): settings.offset = try NumberArgument.parse("offset", value)
                case UInt8(ascii: "q"): break  // qemu-img prints its lines all the same
                case UInt8(ascii: "s"):
                    settings.bufferSize = try NumberArgument.parse("buffer size", value, range: 0...UInt64(Int32.max))
                case UInt8(ascii: "S"):
                    settings.step = try NumberArgument.parse("step_size", value, range: 0...UInt64(Int32.max))
                case UInt8(ascii: "t"):
                    guard cache.setCacheMode(value) else { return QemuImgFront.report("Invalid cache mode") }
                case UInt8(ascii: "w"): settings.write = true
                case 0x91:
                    guard let n = NumberArgument.unsignedLong(value), n <= 0xff else {
                        return QemuImgFront.report("Invalid pattern byte specified")
                    }
                    settings.pattern = UInt8(n)
                case 0x90:
                    guard let n = NumberArgument.unsignedLong(value), n <= UInt64(Int32.max) else {
                        return QemuImgFront.report("Invalid flush interval specified")
                    }
                    settings.flushInterval = n
                case 0x92: settings.drainOnFlush = false
                case QemuImgVerb.imageOpts.code: imageOpts = true
                case QemuImgVerb.forceShare.code: locking = .forceShared
                default: break
                }
            } catch {
                return QemuImgFront.report("\(error)")
            }
            return nil
        }
        switch parsed {
        case let .exit(status): return status
        case let .operands(list): operands = list
        }
        guard operands.count == 1, let filename = operands.first else {
            return QemuImgFront.errorExit("Expecting one image file name")
        }
        if !settings.write && settings.flushInterval != 0 {
            return QemuImgFront.report("--flush-interval is only available in write tests")
        }
        if settings.flushInterval != 0 && settings.flushInterval < settings.depth {
            return QemuImgFront.report("Flush interval can't be smaller than depth")
        }
        settings.writethrough = cache.writethrough && !cache.ignoreFlushes
        locking.direct = cache.direct
        if nativeAIO && !cache.direct {
            return QemuImgFront.report("Could not open '\(filename)': aio=native was specified, but it requires cache.direct=on, "
                        + "which was not specified.")
        }
        let image: BlockImage
        let argument: ImageArgument
        do {
            argument = try ImageArgument(filename, format: format, imageOpts: imageOpts)
            for warning in argument.warnings { Terminal.printError(ProgramName.prefixed(warning)) }
            try argument.checkOpen(writable: settings.write, attachingBacking: true)
        } catch {
            return QemuImgFront.report("\(error)")
        }
        do {
            if let format = argument.format {
                guard let known = ImageFormat(rawValue: format) else {
                    return QemuImgFront.report("Could not open '\(filename)': Unknown driver '\(format)'")
                }
                image = try ImageOpener.open(path: argument.path, format: known, writable: settings.write,
                                             locking: argument.locking(locking))
            } else {
                image = try ImageOpener.open(path: argument.path, writable: settings.write, locking: argument.locking(locking))
            }
        } catch {
            return QemuImgFront.report(ImageOpener.failureMessage(path: filename, error: error))
        }
        defer { try? image.close() }
        if argument.format == nil {
            do { try argument.checkProbed(image.format) } catch { return QemuImgFront.report("\(error)") }
        }
        if format == nil, let raw = image as? RawImage {
            raw.isProbed = true
            if settings.write { Terminal.printError(ProbedRawWarning.text(path: filename)) }
        }
        if settings.step == 0 { settings.step = settings.bufferSize }
        let threads = min(settings.depth, max(settings.count, 1))
        guard threads * settings.bufferSize <= maxBufferBytes else {
            return QemuImgFront.report("Buffers of \(threads * settings.bufferSize) bytes (depth times buffer size) are too large")
        }
        Terminal.print("Sending \(settings.count) \(settings.write ? "write" : "read") requests, "
                       + "\(settings.bufferSize) bytes each, \(settings.depth) in parallel "
                       + "(starting at offset \(settings.offset), step size \(settings.step))")
        if settings.flushInterval != 0 { Terminal.print("Sending flush every \(settings.flushInterval) requests") }
        Terminal.flushStandardOutput()
        let start = wallClockSeconds()
        if let failure = BenchRun(image: image, settings: settings).run(threads: Int(threads)) {
            return QemuImgFront.report(failure)
        }
        let elapsed = wallClockSeconds() - start
        Terminal.print(cFormat("Run completed in %3.3f seconds.", elapsed))
        return 0
    }

    private static func wallClockSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    private static func cFormat(_ format: String, _ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 128)
        _ = withVaList([value]) { vsnprintf(&buffer, buffer.count, format, $0) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One run: the request queue qemu-img's bench_cb keeps, shared by the
/// worker threads under one lock.
final class BenchRun: Sendable {
    struct Queue {
        /// Requests not yet completed (qemu-img's b->n).
        var pending: UInt64
        var inFlight: UInt64 = 0
        var nextOffset: UInt64
        /// No new requests until the queue has drained and the flush is done.
        var draining = false
        var failure: String?
        var runningThreads = 0
        /// Writes in flight, by the order they were sent: the sectors each
        /// touches. A write waits for earlier ones it overlaps, as QEMU's
        /// block layer serialises overlapping requests (a partial sector is
        /// read, modified and written back).
        var writesInFlight: [(sequence: UInt64, sectors: Range<UInt64>)] = []
        var sent: UInt64 = 0
    }

    let image: BlockImage
    let settings: Bench.Settings
    let queue: JobLock<Queue>

    init(image: BlockImage, settings: Bench.Settings) {
        self.image = image
        self.settings = settings
        queue = JobLock(Queue(pending: settings.count, nextOffset: settings.offset))
    }

    /// Runs the requests on `threads` threads; the failure message if one failed.
    func run(threads: Int) -> String? {
        guard settings.count > 0 else { return nil }
        queue.withLock { $0.runningThreads = threads }
        for _ in 0..<threads {
            guard spawnWorkerThread({ [self] in work() }) else {
                queue.withLock { state, waiter in
                    state.failure = state.failure ?? "Failed to issue request"
                    state.runningThreads -= 1
                    waiter.broadcast()
                }
                continue
            }
        }
        return queue.withLock(when: { $0.runningThreads == 0 }) { state, _ in state.failure }
    }

    private func work() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(settings.bufferSize), alignment: 4096)
        buffer.initializeMemory(as: UInt8.self, repeating: settings.pattern)
        defer {
            buffer.deallocate()
            queue.withLock { state, waiter in
                state.runningThreads -= 1
                waiter.broadcast()
            }
        }
        while let (offset, sequence) = nextRequest() {
            do {
                if settings.write {
                    waitForOverlappingWrites(sequence)
                    guard let writable = image as? WritableBlockImage else { throw Qcow2Error.readOnly }
                    try writable.write(UnsafeRawBufferPointer(buffer), at: offset)
                    if settings.writethrough { try writable.flush() }
                } else {
                    try image.read(into: buffer, at: offset)
                }
            } catch {
                fail("Failed request: \(Self.reason(error))")
                return
            }
            if complete(sequence) {
                do {
                    try (image as? WritableBlockImage)?.flush()
                } catch {
                    fail("Failed flush request: \(Self.reason(error))")
                    return
                }
                if settings.drainOnFlush {
                    queue.withLock { state, waiter in
                        state.draining = false
                        waiter.broadcast()
                    }
                }
            }
        }
    }

    /// The offset of the next request, waiting while the queue is full or
    /// draining; nil when every request is sent or one failed.
    private func nextRequest() -> (offset: UInt64, sequence: UInt64)? {
        let depth = settings.depth
        // Go on when one failed, when every request has been sent, or when
        // there is room in the queue and no flush is draining it.
        return queue.withLock(when: { state in
            state.failure != nil || state.pending == state.inFlight || (!state.draining && state.inFlight < depth)
        }) { state, _ in
            if state.failure != nil || state.pending == state.inFlight { return nil }
            let offset = state.nextOffset
            state.inFlight += 1
            let size = image.size
            state.nextOffset = size == 0 ? 0 : (state.nextOffset + settings.step) % size
            let sequence = state.sent
            state.sent += 1
            if settings.write {
                let first = offset / 512
                let end = max(first + 1, (offset + settings.bufferSize + 511) / 512)
                state.writesInFlight.append((sequence, first..<end))
            }
            return (offset, sequence)
        }
    }

    /// Waits until no write sent before `sequence` touches its sectors.
    private func waitForOverlappingWrites(_ sequence: UInt64) {
        queue.withLock(when: { state in
            guard state.failure == nil,
                  let mine = state.writesInFlight.first(where: { $0.sequence == sequence })?.sectors else { return true }
            return !state.writesInFlight.contains { $0.sequence < sequence && $0.sectors.overlaps(mine) }
        }) { _, _ in }
    }

    /// Counts a completed request; true when the caller is to flush now.
    private func complete(_ sequence: UInt64) -> Bool {
        queue.withLock { state, waiter in
            defer { waiter.broadcast() }
            state.writesInFlight.removeAll { $0.sequence == sequence }
            let notSent = state.pending - state.inFlight
            state.pending -= 1
            state.inFlight -= 1
            guard settings.flushInterval != 0, notSent % settings.flushInterval == 0 else { return false }
            if settings.drainOnFlush {
                state.draining = true
                return state.inFlight == 0
            }
            return true
        }
    }

    private func fail(_ message: String) {
        queue.withLock { state, waiter in
            if state.failure == nil { state.failure = message }
            waiter.broadcast()
        }
    }

    private static func reason(_ error: Error) -> String {
        String(cString: strerror(Qcow2Error.errnoValue(of: error)))
    }
}
