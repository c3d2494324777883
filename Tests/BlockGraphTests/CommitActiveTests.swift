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

    /// Several chunks are copied at once (MirrorInFlight); a guest write
    /// racing a copy of its chunk must reach base after that copy, never be
    /// overwritten by it. Writes of every size land all over the copied
    /// range while the job copies; afterwards base reads exactly as top.
    @Test func writesRacingParallelCopiesReachBase() throws {
        let images = try ScenarioImages()
        try Tool.qemuIO(images.top, "write -P 0x21 0 24M")
        let graph = try images.blockdevGraph()
        let top = try #require(graph.node(named: "top"))
        let base = try #require(graph.node(named: "base"))
        let driver = try graph.makeCommitDriver(CommitRequest(device: "top", baseNode: "base"))
        let context = CommitTestContext()
        let runner = Runner(driver, context)
        var random: UInt64 = 0x9E37_79B9_7F4A_7C15
        // Most writes in the first 2 MiB (two chunks), so that a chunk is
        // dirtied again while its copy is in flight, over and over.
        for round in 0..<3000 {
            random ^= random << 13; random ^= random >> 7; random ^= random << 17
            let length = 512 << (random % 9)                    // 512 bytes to 128 KiB
            let span: UInt64 = round % 8 == 0 ? 24 << 20 : 2 << 20
            let offset = (random >> 8) % (span - UInt64(length)) & ~511
            try top.write([UInt8](repeating: UInt8(truncatingIfNeeded: round), count: length), at: offset)
        }
        context.requestCompletion()
        #expect(runner.done.wait(timeout: .now() + 60) == .success)
        #expect(runner.error == nil)
        try driver.prepare()
        var expected = [UInt8](repeating: 0, count: 1 << 20)
        var actual = expected
        for megabyte in 0..<UInt64(64) {
            try expected.withUnsafeMutableBytes { try top.read(into: $0, at: megabyte << 20) }
            try actual.withUnsafeMutableBytes { try base.read(into: $0, at: megabyte << 20) }
            #expect(actual == expected, "MiB \(megabyte) of base differs from top")
        }
        driver.commit()
        driver.clean()
        try graph.closeAll()
        for path in [images.base, images.mid, images.top] { try Tool.checkClean(path) }
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
