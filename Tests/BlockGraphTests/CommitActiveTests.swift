// Active commit: copy, ready, writes during the ready phase, pivot.
import Foundation
import Testing
import Qcow2
@testable import BlockGraph

@Suite struct CommitActiveTests {
    /// Runs the driver's `run` on a thread of its own, as the job layer does.
    final class Runner: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var error: Error?
        init(_ driver: BlockJobDriver, _ context: CommitTestContext) {
            // Its run is the thread's, as Job.driver's is the worker's.
            nonisolated(unsafe) let driver = driver
            let thread = Thread { [self] in
                do { try driver.run(context) } catch { self.error = error }
                done.signal()
            }
            thread.start()
        }
    }

    @Test func driveActiveCommitPivotsToBase() throws {
        let images = try ScenarioImages()
        try Tool.qemuIO(images.top, "write -P 0x66 2M 64k")
        let graph = BlockGraph()
        try graph.addDrive(BlockdevOptions(driver: "qcow2", nodeName: "top", file: .filename(images.top)), id: "d0")
        let top = try #require(graph.node(named: "top"))
        let driver = try graph.makeCommitDriver(CommitRequest(device: "d0"))
        // The base opened read-only from the header is writable for the job.
        let base = try #require(top.backing?.backing)
        #expect(!base.isReadOnly)

        let context = CommitTestContext()
        let runner = Runner(driver, context)
        #expect(context.readySignal.wait(timeout: .now() + 30) == .success)
        // top's 64 KiB and mid's 64 KiB were copied (QEMU reports 131072 too).
        #expect(context.progress == (131_072, 131_072))
        // A write through the active node while ready reaches base.
        try top.write([UInt8](repeating: 0x77, count: 4096), at: 3 << 20)
        context.requestCompletion()
        #expect(runner.done.wait(timeout: .now() + 30) == .success)
        #expect(runner.error == nil)
        try driver.prepare()
        driver.commit()
        driver.clean()

        // The drive now uses base; top and mid are gone.
        #expect(try graph.lookup(device: "d0") === base)
        #expect(!base.isReadOnly)
        #expect(graph.namedNodes.count == 2)
        #expect(try base.read(1, at: 3 << 20) == [0x77])
        try graph.closeAll()
        for path in [images.base, images.mid, images.top] { try Tool.checkClean(path) }
        try Tool.expectPattern(images.base, 0x66, offset: "2M", length: "64k")
        try Tool.expectPattern(images.base, 0x55, offset: "1M", length: "64k")
        try Tool.expectPattern(images.base, 0x77, offset: "3M", length: "4k")
        // QEMU leaves top's header alone.
        #expect(try Tool.backing(of: images.top).file == images.mid)
    }

    @Test func writesBeforeReadyAreCopiedToo() throws {
        let images = try ScenarioImages()
        let graph = try images.blockdevGraph()
        let top = try #require(graph.node(named: "top"))
        let driver = try graph.makeCommitDriver(CommitRequest(device: "top", baseNode: "base"))
        // Written after the job exists but before it runs.
        try top.write([UInt8](repeating: 0x12, count: 512), at: 5 << 20)
        let context = CommitTestContext()
        context.requestCompletion()
        try CommitRunner.runToEnd(driver, context)
        let base = try #require(graph.node(named: "base"))
        #expect(try base.read(1, at: 5 << 20) == [0x12])
        #expect(try base.read(1, at: 1 << 20) == [0x55])
        // The monitor still holds top; nothing else changed.
        #expect(top.backing === graph.node(named: "mid"))
        #expect(graph.namedNodes.count == 8)
        try graph.closeAll()
        for path in [images.base, images.mid, images.top, images.ovl2] { try Tool.checkClean(path) }
    }

    @Test func cancelledActiveCommitDoesNotPivot() throws {
        let images = try ScenarioImages()
        let graph = BlockGraph()
        try graph.addDrive(BlockdevOptions(file: .filename(images.top)), id: "d0")
        let top = try graph.lookup(device: "d0")
        let driver = try graph.makeCommitDriver(CommitRequest(device: "d0"))
        let context = CommitTestContext()
        let runner = Runner(driver, context)
        #expect(context.readySignal.wait(timeout: .now() + 30) == .success)
        context.cancel()
        #expect(runner.done.wait(timeout: .now() + 30) == .success)
        #expect(runner.error is JobCancelled)
        driver.abort()
        driver.clean()
        #expect(try graph.lookup(device: "d0") === top)
        #expect(top.backing?.backing?.isReadOnly == true)
        #expect(graph.namedNodes.count == 6)
        // Writes go on without being tracked.
        try top.write([1, 2, 3], at: 0)
        try graph.closeAll()
        for path in [images.base, images.mid, images.top] { try Tool.checkClean(path) }
    }
}
