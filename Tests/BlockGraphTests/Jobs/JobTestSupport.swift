// A real driver that copies between two in-memory buffers, for the job
// tests (the test thread plays the main loop with BlockGraph's PumpedScheduler).
import Glibc
import Testing
@testable import BlockGraph

/// The error a TestCopyDriver fails with.
struct TestIOError: Error, CustomStringConvertible {
    var description: String { "Input/output error" }
}

struct TestPrepareError: Error, CustomStringConvertible {
    var description: String { "prepare refused" }
}

/// Copies `source` into `target` in chunks, honouring the job's pause
/// points and speed limit; optionally fails, converges (ready) or waits.
final class TestCopyDriver: BlockJobDriver, @unchecked Sendable {
    let jobType: String
    let busyNodes: [String]
    let source: [UInt8]
    let chunk: Int
    private(set) var target: [UInt8]
    /// Chunk index whose "read" fails (once, or always).
    var failingChunk: Int?
    var failAlways = false
    var failureErrno: Int32 = EIO
    /// After copying, become ready and wait for complete (or a soft cancel).
    var converges = false
    /// Sleep this long (in pause points) before each chunk.
    var chunkDelayNanoseconds: UInt64 = 0
    var prepareFails = false
    /// A converging run ends on a soft cancel (as mirror does); false: only on complete.
    var honoursSoftCancel = true

    private var mutex = pthread_mutex_t()
    private var _calls: [String] = []
    private var _startedCopying = false
    private var _completedBy = ""

    init(type: String = "commit", busyNodes: [String] = [], size: Int = 64 * 1024, chunk: Int = 4096) {
        self.jobType = type
        self.busyNodes = busyNodes
        // Each 512-byte block holds its own non-zero byte (filled by memset:
        // per-byte loops are slow in debug builds).
        var source = [UInt8](repeating: 0, count: size)
        source.withUnsafeMutableBytes { bytes in
            for block in stride(from: 0, to: size, by: 512) {
                memset(bytes.baseAddress! + block, Int32(block / 512 % 255 + 1), min(512, size - block))
            }
        }
        self.source = source
        self.target = [UInt8](repeating: 0, count: size)
        self.chunk = chunk
        pthread_mutex_init(&mutex, nil)
    }

    /// What the job layer called, in order ("run", "prepare", "commit", "abort", "clean").
    var calls: [String] { locked { _calls } }
    /// The run has copied at least one chunk.
    var startedCopying: Bool { locked { _startedCopying } }
    /// How a converging run ended: "complete" or "soft-cancel".
    var completedBy: String { locked { _completedBy } }
    var copiedAll: Bool {
        locked { target.withUnsafeBytes { t in source.withUnsafeBytes { memcmp(t.baseAddress!, $0.baseAddress!, $0.count) == 0 } } }
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    private func log(_ call: String) { locked { _calls.append(call) } }

    func run(_ context: JobRunContext) throws {
        log("run")
        let total = UInt64(source.count)
        context.setProgress(current: 0, total: total)
        var index = 0
        var offset = 0
        var copied: UInt64 = 0
        while offset < source.count {
            // The loop's pause point, accounting what the last pass copied
            // (QEMU's commit_run sleeps at the top of each pass).
            try context.rateLimit(afterCopying: copied)
            copied = 0
            if chunkDelayNanoseconds > 0 { try context.sleep(nanoseconds: chunkDelayNanoseconds) }
            if failingChunk == index {
                if !failAlways { failingChunk = nil }
                switch context.errorAction(isRead: true, errorNumber: failureErrno) {
                case .report: throw TestIOError()
                case .ignore, .stop: continue   // retry this chunk
                }
            }
            let end = min(offset + chunk, source.count)
            locked {
                target.replaceSubrange(offset..<end, with: source[offset..<end])
                _startedCopying = true
            }
            copied = UInt64(end - offset)
            offset = end
            index += 1
            context.setProgress(current: UInt64(offset), total: total)
        }
        guard converges else { return }
        context.becameReady()
        while !context.isCompletionRequested && !(honoursSoftCancel && context.isCancelRequested) {
            try context.sleep(nanoseconds: 1_000_000)
        }
        locked { _completedBy = context.isCompletionRequested ? "complete" : "soft-cancel" }
    }

    func prepare() throws {
        log("prepare")
        if prepareFails { throw TestPrepareError() }
    }
    func commit() { log("commit") }
    func abort() { log("abort") }
    func clean() { log("clean") }
}

/// A manager on a pumped scheduler that records its events.
final class JobHarness: @unchecked Sendable {
    let scheduler = PumpedScheduler()
    private(set) var events: [JobEvent] = []
    private(set) var manager: JobManager!

    init() {
        manager = JobManager(scheduler: scheduler) { [unowned self] event in events.append(event) }
    }

    /// The events of `id`, as short strings: statuses by name, BLOCK_JOB_* by kind.
    func trace(_ id: String) -> [String] {
        events.compactMap { event in
            switch event {
            case .statusChange(let jobID, let status): return jobID == id ? status.rawValue : nil
            case .blockJobCompleted(let data): return data.device == id ? (data.error == nil ? "COMPLETED" : "COMPLETED(error)") : nil
            case .blockJobCancelled(let data): return data.device == id ? "CANCELLED" : nil
            case .blockJobReady(let data): return data.device == id ? "READY" : nil
            case .blockJobPending(_, let jobID): return jobID == id ? "PENDING" : nil
            case .blockJobError(let device, let operation, let action):
                return device == id ? "ERROR(\(operation),\(action))" : nil
            }
        }
    }

    /// Pumps until the job is gone (null); false on timeout.
    @discardableResult
    func runToEnd(_ id: String, seconds: Double = 10) -> Bool {
        scheduler.pump(until: { manager.job(id: id) == nil }, seconds: seconds)
    }

    @discardableResult
    func pump(until done: () -> Bool) -> Bool { scheduler.pump(until: done) }
}
