// I/O errors during a commit go through the job's on-error policy; soft
// cancel of a ready active commit stops without switching over.
import Foundation
import Testing
import Qcow2
@testable import BlockGraph

@Suite struct CommitErrorTests {
    /// mid gets a compressed cluster at 4 MiB whose data is then garbled:
    /// block status says data, reading it fails with EIO.
    static func imagesWithUnreadableMid() throws -> ScenarioImages {
        let images = try ScenarioImages()
        try Tool.qemuIO(images.mid, "write -c -P 0x11 4M 64k")
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: images.mid))
        let size = try handle.seekToEnd()
        var start = size / 65536 * 65536
        if start == size { start -= 65536 }
        try handle.seek(toOffset: start)
        handle.write(Data(repeating: 0xff, count: Int(size - start)))
        try handle.close()
        return images
    }

    @Test func reportedReadErrorFailsTheJobAndChangesNothing() throws {
        let images = try Self.imagesWithUnreadableMid()
        let graph = try images.blockdevGraph()
        let driver = try graph.makeCommitDriver(CommitIntermediateTests.request(images))
        let context = CommitTestContext()
        do {
            try CommitRunner.runToEnd(driver, context)
            Issue.record("the commit should have failed")
        } catch let failure as BlockJobIOFailure {
            #expect(failure.operation == .read)
            #expect(failure.description == "Input/output error")
        }
        #expect(context.errorsSeen.count == 1)
        #expect(context.errorsSeen.first?.isRead == true && context.errorsSeen.first?.errno == EIO)
        #expect(graph.node(named: "top")?.backing === graph.node(named: "mid"))
        #expect(graph.claims.isEmpty)
        try graph.closeAll()
        for path in [images.base, images.top, images.ovl2] { try Tool.checkClean(path) }
        #expect(try Tool.backing(of: images.top).file == images.mid)
    }

    @Test func ignoredErrorIsRetriedUntilCancelled() throws {
        let images = try Self.imagesWithUnreadableMid()
        let graph = try images.blockdevGraph()
        defer { try? graph.closeAll() }
        let driver = try graph.makeCommitDriver(CommitIntermediateTests.request(images))
        let context = CommitTestContext(cancelAtPausePoint: 60)
        context.errorPolicy = .ignore
        #expect(throws: JobCancelled.self) { try CommitRunner.runToEnd(driver, context) }
        #expect(context.errorsSeen.count > 10)
        // Everything before the bad cluster was copied.
        #expect(context.progress.current == 4 << 20)
    }

    @Test func softCancelledActiveCommitCompletesWithoutSwitching() throws {
        let images = try ScenarioImages()
        let graph = BlockGraph()
        defer { try? graph.closeAll() }
        let top = try graph.addDrive(BlockdevOptions(file: .filename(images.top)), id: "d0")
        let driver = try graph.makeCommitDriver(CommitRequest(device: "d0"))
        let context = CommitTestContext()
        let runner = CommitActiveTests.Runner(driver, context)
        #expect(context.readySignal.wait(timeout: .now() + 30) == .success)
        context.softCancel()
        #expect(runner.done.wait(timeout: .now() + 30) == .success)
        #expect(runner.error == nil)
        try driver.prepare()
        driver.commit()
        driver.clean()
        #expect(try graph.lookup(device: "d0") === top)
        #expect(top.backing?.backing?.isReadOnly == true)
        #expect(try top.backing?.backing?.read(1, at: 1 << 20) == [0x55])
    }
}
