// One worker of a convert (convert_co_do_copy): takes the next request,
// reads it, waits for its turn when writes go in guest order, writes it
// (data, zero writes, or nothing), and hands the turn on. A compressing
// worker compresses its cluster before it waits, so clusters are compressed
// on every worker at once while allocation and writes stay in guest order
// (qemu-img compresses inside its in-order write, one cluster at a time).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch

extension ConvertCopy {
    /// Works the requests in `first` (handed out already, in guest order),
    /// then further ones until the disk is done or a worker failed.
    func worker(first: [Request]) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: settings.bufferSectors * ConvertSettings.sectorSize, alignment: 4096)
        defer { buffer.deallocate() }
        let turn = DispatchSemaphore(value: 0)
        var compression: ClusterCompression?
        if settings.compressed, let qcow2 = target as? Qcow2Image {
            do { compression = try qcow2.makeClusterCompression() } catch {
                fail(.export(.write(offset: 0, reason: Qcow2Error.reason(of: error))))
            }
        }
        var pending = first[...]
        var next = pending.popFirst() ?? nextRequest()
        while let (sector, count, handedOut) = next {
            defer { next = pending.popFirst() ?? nextRequest() }
            var status = handedOut
            let offset = UInt64(sector) * UInt64(Self.sector)
            let bytes = Int(count * Self.sector)
            // Only data requests use the buffer; zero and backing ones may be longer.
            let data = UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(bytes, buffer.count)])
            var offloaded = false
            var cluster: CompressedCluster?
            while true {
                offloaded = status == .data && offloading.load(ordering: .relaxed)
                if status == .data && !offloaded {
                    do {
                        try sources.read(into: data, sector: sector, count: count, salvage: settings.salvage,
                                         warn: reporter.warning)
                    } catch {
                        fail(.export(.read(offset: offset, reason: Qcow2Error.reason(of: error))))
                    }
                } else if settings.minSparse == 0 && status == .zero {
                    status = .data
                    data.initializeMemory(as: UInt8.self, repeating: 0)
                }
                if let compression, status == .data, !hasFailed {
                    cluster = compress(UnsafeRawBufferPointer(data), with: compression, at: offset)
                }
                if settings.inOrder { waitForTurn(sector, turn) }
                guard !hasFailed else { break }
                if offloaded {
                    if copyOffloaded(sector: sector, count: count) { break }
                    // QEMU gives up offloading for good after a failure and copies normally.
                    offloading.store(false, ordering: .relaxed)
                    continue
                }
                do {
                    try write(UnsafeRawBufferPointer(data), sector: sector, count: count, status: status, cluster: cluster)
                } catch {
                    fail(.export(.write(offset: offset, reason: Qcow2Error.reason(of: error))))
                }
                break
            }
            if settings.inOrder { passTurn(after: sector + count) }
        }
    }

    /// The next request (first sector, length, status), nil when the disk
    /// is done or a worker failed.
    func nextRequest() -> Request? {
        let request: Result<Request?, Error> = shared.withLock { s in
            guard s.failure == nil, s.sector < sources.totalSectors else { return .success(nil) }
            var n: Int64
            do { n = try iterationSectors(s.sector, cursor: &s.cursor) } catch { return .failure(error) }
            let status = s.cursor.status
            if settings.minSparse == 0 && status == .zero { n = min(n, Int64(settings.bufferSectors)) }
            let sector = s.sector
            s.sector += n
            if status == .data || (settings.minSparse == 0 && status == .zero) {
                s.allocatedDone += n
                reporter.progress?(Float(100.0 * Double(s.allocatedDone) / Double(s.allocatedSectors)))
            }
            return .success((sector, n, status))
        }
        switch request {
        case let .success(value): return value
        case let .failure(error):
            fail(error as? Qcow2Error ?? .export(.read(offset: 0, reason: Qcow2Error.reason(of: error))))
            return nil
        }
    }

    /// Compresses one cluster's data ahead of its turn; nil for a cluster of
    /// zeroes (not written, as with -S) or after a failure (recorded).
    func compress(_ data: UnsafeRawBufferPointer, with compression: ClusterCompression,
                          at offset: UInt64) -> CompressedCluster? {
        if settings.minSparse > 0 && isAllZero(data) { return nil }
        do { return try compression.compress(data) } catch {
            fail(.export(.write(offset: offset, reason: Qcow2Error.reason(of: error))))
            return nil
        }
    }

    /// Writes one request (convert_co_write): data that is not zero (all of
    /// it with -S 0, whole clusters when compressing, compressed ahead in
    /// `cluster`), zero writes for the rest unless the target is zero
    /// already, nothing where the target's backing shows through.
    func write(_ data: UnsafeRawBufferPointer, sector: Int64, count: Int64, status: RangeStatus,
                       cluster: CompressedCluster?) throws {
        guard status != .backingFile else { return }
        var sector = sector, left = count, position = 0
        while left > 0 {
            var n = left
            var isData = false
            if status == .data {
                let run = UnsafeRawBufferPointer(rebasing: data[position...])
                if settings.minSparse == 0 {
                    isData = true
                } else if !settings.compressed {
                    let found = SparseDetection.dataRun(run, count: Int(n), minimum: settings.minSparse,
                                                        sector: sector, alignment: settings.alignment)
                    isData = found.isData
                    n = Int64(found.count)
                } else {
                    isData = cluster != nil
                }
            }
            let offset = UInt64(sector) * UInt64(Self.sector), bytes = Int(n * Self.sector)
            if isData {
                throttle(bytes)
                let part = UnsafeRawBufferPointer(rebasing: data[position..<(position + bytes)])
                if let cluster, let qcow2 = target as? Qcow2Image {
                    try qcow2.writeCompressed(cluster, at: offset)
                } else {
                    try target.write(part, at: offset)
                }
                if settings.flushAfterWrite { try target.flush() }
            } else if !settings.targetIsZero {
                throttle(bytes)
                try target.writeZeroes(at: offset, length: UInt64(bytes), mayUnmap: true)
                if settings.flushAfterWrite { try target.flush() }
            }
            sector += n
            left -= n
            position += bytes
        }
    }

    /// Copies a data request file to file in the kernel (-C); false when that
    /// cannot be done here (not raw files on both sides, or the kernel refused).
    private func copyOffloaded(sector: Int64, count: Int64) -> Bool {
        guard let target = target as? RawImage else { return false }
        var sector = sector, left = count
        while left > 0 {
            let (index, start) = sources.part(of: sector)
            guard let source = sources.images[index] as? RawImage else { return false }
            let n = min(left, sources.sectors[index] - (sector - start))
            let bytes = UInt64(n * Self.sector)
            throttle(Int(bytes))
            do {
                try target.file.copyRange(from: source.file, at: UInt64(sector - start) * UInt64(Self.sector),
                                          to: UInt64(sector) * UInt64(Self.sector), length: bytes)
            } catch { return false }
            sector += n
            left -= n
        }
        return true
    }

    // MARK: Turns, failures, rate

    var hasFailed: Bool { shared.withLock { $0.failure != nil } }

    /// Records the first failure and wakes every worker waiting for a turn.
    func fail(_ error: Qcow2Error) {
        shared.withLock { s in
            if s.failure == nil { s.failure = error }
            for waiter in s.waiting.values { waiter.signal() }
            s.waiting.removeAll()
        }
        // Compressing workers waiting for a slot find the failure.
        for _ in 0..<ConvertSettings.maxParallel * Self.slotsPerWorker { freeSlotSignal.signal() }
    }

    /// Blocks until everything before `sector` is written (or a worker failed).
    private func waitForTurn(_ sector: Int64, _ turn: DispatchSemaphore) {
        while true {
            let isMine = shared.withLock { s in
                if s.writtenUpTo == sector || s.failure != nil { return true }
                s.waiting[sector] = turn
                return false
            }
            if isMine { return }
            turn.wait()
        }
    }

    /// Marks everything before `end` written and wakes the request starting there.
    private func passTurn(after end: Int64) {
        shared.withLock { s in
            s.writtenUpTo = end
            s.waiting.removeValue(forKey: end)?.signal()
        }
    }

    /// Waits until `bytes` more may be written under the rate limit (-r):
    /// writes are spaced so that they average the rate.
    private func throttle(_ bytes: Int) {
        let rate = settings.rateLimit
        guard rate > 0 else { return }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nanoseconds = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        let (product, overflow) = UInt64(bytes).multipliedReportingOverflow(by: 1_000_000_000)
        let span = overflow ? UInt64.max / 4 : product / rate
        let start = shared.withLock { s in
            let start = max(nanoseconds, s.nextWriteTime)
            s.nextWriteTime = start &+ span
            return start
        }
        if start > nanoseconds {
            let wait = start - nanoseconds
            var request = timespec(tv_sec: Int(wait / 1_000_000_000), tv_nsec: Int(wait % 1_000_000_000))
            var remaining = timespec()
            while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
        }
    }
}
