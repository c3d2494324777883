// The copy loop of qemu-img convert (convert_do_copy and its coroutines):
// the disk is cut into requests in guest order, each a run of one block
// status (data, zero, or left to the target's backing) of at most one buffer;
// several workers read at once, and each writes when every request before
// its own has been written (unless out-of-order writes were asked for), so
// a qcow2 target allocates its clusters in guest order, as QEMU's does.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Copies concatenated sources into an open target as qemu-img convert does.
package final class ConvertCopy: Sendable {
    /// What a request does (ImgConvertBlockStatus).
    enum RangeStatus: Sendable { case data, zero, backingFile }
    /// A request: its first sector, its length in sectors, what it does.
    typealias Request = (sector: Int64, count: Int64, status: RangeStatus)

    /// The block status in force and where it ends, in sectors.
    struct Cursor {
        var status = RangeStatus.data
        var nextStatus: Int64 = 0
    }

    /// State the workers share (qemu-img's coroutines share it under one lock).
    struct Shared {
        var cursor = Cursor()
        /// The next sector to hand out.
        var sector: Int64 = 0
        /// Sectors of data handed out, and in all, for progress.
        var allocatedDone: Int64 = 0
        var allocatedSectors: Int64 = 0
        /// Everything before this sector has been written (in-order writes).
        var writtenUpTo: Int64 = 0
        /// Workers waiting for their turn to write, by their first sector.
        var waiting: [Int64: DispatchSemaphore] = [:]
        /// The first failure; every worker stops at it.
        var failure: Qcow2Error?
        /// When the rate limit lets the next write start (monotonic ns).
        var nextWriteTime: UInt64 = 0
        /// In-order compression (CompressedPipeline.swift): slots not in use,
        /// requests waiting for their turn by first sector, and whether a
        /// worker is writing them.
        var freeSlots: [Int] = []
        var deposits: [Int64: Deposit] = [:]
        var draining = false
    }

    static let sector = Int64(ConvertSettings.sectorSize)
    /// Longest block-status query, in sectors (BDRV_REQUEST_MAX_SECTORS).
    static let maxRequestSectors = Int64(Int32.max) >> 9

    let sources: ConvertSources
    let target: WritableBlockImage
    let settings: ConvertSettings
    let reporter: ConvertReporter
    let shared = Mutex(Shared())
    /// Signalled once per free slot (in-order compression). Starts at zero,
    /// as Dispatch requires of a semaphore that may end with fewer signals.
    let freeSlotSignal = DispatchSemaphore(value: 0)
    /// Copy offloading in force; dropped for good after a failed attempt.
    let offloading: Atomic<Bool>

    package init(sources: ConvertSources, target: WritableBlockImage, settings: ConvertSettings,
                 reporter: ConvertReporter = ConvertReporter()) {
        self.sources = sources
        self.target = target
        var settings = settings
        // Compressed output goes a cluster at a time.
        if settings.compressed && settings.clusterSectors > 0 { settings.bufferSectors = settings.clusterSectors }
        self.settings = settings
        self.reporter = reporter
        offloading = Atomic(settings.copyOffload)
    }

    /// Runs the copy. Throws `Qcow2Error.export` (block status, read or write
    /// failure, in qemu-img's words) for the first failure.
    package func run() throws {
        if settings.compressed {
            guard settings.clusterSectors > 0, settings.clusterSectors <= ConvertSettings.maxBufferSectors else {
                throw Qcow2Error.invalidArgument("invalid cluster size")
            }
        }
        // The sectors that will be read, for progress (qemu-img counts them
        // before it starts, whether progress is shown or not).
        var allocatedSectors: Int64 = 0
        var cursor = Cursor(), sector: Int64 = 0
        while sector < sources.totalSectors {
            let n = try iterationSectors(sector, cursor: &cursor)
            if cursor.status == .data || (settings.minSparse == 0 && cursor.status == .zero) { allocatedSectors += n }
            sector += n
        }
        shared.withLock { $0.allocatedSectors = allocatedSectors }
        let workers = max(1, min(settings.parallel, ConvertSettings.maxParallel))
        // Each worker's first request is handed out before any runs, as
        // qemu-img's coroutines each take one before the first read returns
        // (so a failure there still shows the same progress).
        var firstRequests: [Request] = []
        while firstRequests.count < workers, let request = nextRequest() { firstRequests.append(request) }
        if settings.compressed && settings.inOrder {
            runCompressing(workers: workers, firstRequests: firstRequests)
        } else {
            runWorkers(firstRequests.map { [$0] }) { self.worker(first: $0) }
        }
        if let failure = shared.withLock({ $0.failure }) { throw failure }
        if settings.compressed {
            // qemu-img ends a compressed stream with an empty compressed
            // write, which pads the file to a whole sector.
            do { try target.writeCompressed(UnsafeRawBufferPointer(start: nil, count: 0), at: 0) } catch {
                throw RawExport.Failure.write(offset: 0, error: error)
            }
        }
    }

    /// Runs `work` on a thread of its own for each of `groups` (a worker's
    /// first requests), the first on this thread; where no more threads are
    /// to be had, this thread works the remaining groups' requests too.
    private func runWorkers<First: Sendable>(_ groups: [[First]], _ work: @escaping @Sendable ([First]) -> Void) {
        var threads: [WorkerThread] = []
        var mine = groups.first ?? []
        for (index, group) in groups.enumerated().dropFirst() {
            guard let thread = WorkerThread({ work(group) }) else {
                mine += groups[index...].joined()
                break
            }
            threads.append(thread)
        }
        work(mine)
        for thread in threads { thread.join() }
    }

    /// In-order compression (CompressedPipeline.swift): each first request
    /// gets a slot; the others are free for the requests that follow. Slots
    /// beyond the requests in flight let the threads compress ahead while the
    /// one with the request next in order is held up (preempted on a busy
    /// machine, or reading): up to `slotsPerWorker` per thread within
    /// `slotMemory`, and at least one more per thread. Compressing is CPU
    /// work, so one thread per core and one more (to compress while another
    /// reads or writes) take the -m requests in flight between them: more
    /// would only add a compression context and slots each.
    private func runCompressing(workers: Int, firstRequests: [Request]) {
        let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let threads = min(workers, cores + 1)
        let dataBytes = settings.bufferSectors * ConvertSettings.sectorSize
        let slotCount = max(workers + threads,
                            min(threads * Self.slotsPerWorker, Self.slotMemory / (2 * dataBytes)))
        let memory = SlotMemory(base: .allocate(byteCount: slotCount * 2 * dataBytes, alignment: 4096),
                                dataBytes: dataBytes, compressedBytes: dataBytes)
        defer { memory.base.deallocate() }
        shared.withLock { s in
            s.freeSlots = Array(firstRequests.count..<slotCount)
            s.deposits.reserveCapacity(slotCount)
        }
        for _ in firstRequests.count..<slotCount { freeSlotSignal.signal() }
        // Dealt out in turn, so that each thread works its share in guest order.
        let firsts = firstRequests.enumerated().map { ($1, $0) }
        let groups = (0..<min(threads, firsts.count)).map { thread in
            stride(from: thread, to: firsts.count, by: threads).map { firsts[$0] }
        }
        runWorkers(groups) { self.compressingWorker(first: $0, memory: memory) }
    }

    /// The length in sectors of the request starting at `sector`, updating
    /// the block status in `cursor` when the previous one has run out
    /// (convert_iteration_sectors).
    func iterationSectors(_ sector: Int64, cursor: inout Cursor) throws -> Int64 {
        let (index, start) = sources.part(of: sector)
        var n = min(sources.totalSectors - sector, Self.maxRequestSectors)
        var postBackingZero = false
        if let backingSectors = settings.targetBackingSectors {
            if sector >= backingSectors {
                postBackingZero = true
            } else if sector + n > backingSectors {
                // Zeroes are handled differently from there on.
                n = backingSectors - sector
            }
        }
        if cursor.nextStatus <= sector {
            let image = sources.images[index]
            let offset = UInt64(sector - start) * UInt64(Self.sector)
            var found: (isData: Bool, isZero: Bool, count: UInt64)?
            while found == nil {
                do {
                    let status = try sources.blockStatus(image, at: offset, length: UInt64(n * Self.sector),
                                                         topOnly: settings.targetHasBacking)
                    found = (status.isData, status.isZero, status.length)
                } catch {
                    guard settings.salvage else {
                        throw Qcow2Error.export(.blockStatus(offset: offset, reason: Qcow2Error.reason(of: error)))
                    }
                    if n == 1 {
                        reporter.warning("error while reading block status at offset \(offset): \(Qcow2Error.reason(of: error))")
                        found = (true, false, UInt64(Self.sector))  // just try to read it
                    } else {
                        n = (n + 3) / 4  // retry on a shorter range
                    }
                }
            }
            let (isData, isZero, count) = found!
            n = Int64((count + UInt64(Self.sector) - 1) / UInt64(Self.sector))
            // Keep the next status query on the source's cluster boundaries.
            let tail = (sector - start + n) % sources.alignments[index]
            if n > tail { n -= tail }
            if isZero {
                cursor.status = postBackingZero ? .backingFile : .zero
            } else if isData {
                cursor.status = .data
            } else {
                cursor.status = settings.targetHasBacking ? .backingFile : .data
            }
            cursor.nextStatus = sector + n
        }
        n = min(n, cursor.nextStatus - sector)
        if cursor.status == .data { n = min(n, Int64(settings.bufferSectors)) }
        if settings.compressed {
            // Compressed clusters are written whole: a shorter run counts as data.
            let cluster = Int64(settings.clusterSectors)
            if n < cluster {
                n = min(cluster, sources.totalSectors - sector)
                cursor.status = .data
            } else {
                n -= n % cluster
            }
        }
        return n
    }
}
