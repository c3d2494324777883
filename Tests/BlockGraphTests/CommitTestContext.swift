// A small JobRunContext for driving commit drivers without the job layer:
// records progress, can cancel after a number of pause points, and lets a
// test wait for readiness and request completion.
import Foundation
import Synchronization
@testable import BlockGraph

final class CommitTestContext: JobRunContext, @unchecked Sendable {
    private let lock = NSLock()
    private var _progress: (UInt64, UInt64) = (0, 0)
    private var _ready = false
    private var _completionRequested = false
    private var _cancelled = false
    private var pausePoints = 0
    /// Cancel at the pause point with this number (1-based), if set.
    let cancelAtPausePoint: Int?
    let readySignal = DispatchSemaphore(value: 0)

    init(cancelAtPausePoint: Int? = nil) {
        self.cancelAtPausePoint = cancelAtPausePoint
    }

    var progress: (current: UInt64, total: UInt64) { lock.withLock { _progress } }
    var isReady: Bool { lock.withLock { _ready } }

    /// A forced cancel: pause points throw.
    func cancel() { lock.withLock { _cancelled = true } }
    /// A cancel without force: a ready job sees isCancelRequested.
    func softCancel() { lock.withLock { _softCancelled = true } }
    private var _softCancelled = false
    /// The on-error answer, and the errors asked about.
    var errorPolicy: BlockErrorAction = .report
    private(set) var errorsSeen: [(isRead: Bool, errno: Int32)] = []
    func requestCompletion() { lock.withLock { _completionRequested = true } }

    func pausePoint() throws {
        try lock.withLock {
            pausePoints += 1
            if let cancelAtPausePoint, pausePoints >= cancelAtPausePoint { _cancelled = true }
            if _cancelled { throw JobCancelled() }
        }
    }

    func rateLimit(afterCopying bytes: UInt64) throws { try pausePoint() }

    func setProgress(current: UInt64, total: UInt64) { lock.withLock { _progress = (current, total) } }

    func becameReady() {
        let first = lock.withLock { () -> Bool in
            defer { _ready = true }
            return !_ready
        }
        if first { readySignal.signal() }
    }

    var isCompletionRequested: Bool { lock.withLock { _completionRequested } }

    var isCancelRequested: Bool { lock.withLock { _cancelled || _softCancelled } }

    func sleep(nanoseconds: UInt64) throws {
        try pausePoint()
        Thread.sleep(forTimeInterval: Double(min(nanoseconds, 5_000_000)) / 1e9)
    }

    func errorAction(isRead: Bool, errorNumber: Int32) -> BlockErrorAction {
        lock.withLock {
            errorsSeen.append((isRead, errorNumber))
            return errorPolicy
        }
    }
}

enum CommitRunner {
    /// What the job layer does with a driver: run, then prepare + commit,
    /// or abort when either fails; clean in every case.
    static func runToEnd(_ driver: BlockJobDriver, _ context: CommitTestContext) throws {
        defer { driver.clean() }
        do {
            try driver.run(context)
            try driver.prepare()
        } catch {
            driver.abort()
            throw error
        }
        driver.commit()
    }
}
