// A commit that is aborted after its prepare rewrote the overlays' headers
// puts the old headers back; one that cannot be written is reported (in the
// words QEMU uses for a backing link it could not update) and the others
// are still put back.
import Foundation
import Synchronization
import Testing
import Qcow2
@testable import BlockGraph

/// Collects what a sink receives (sinks may be called from any thread).
final class GraphDiagnostics: Sendable {
    private let received = Mutex<[Qcow2Diagnostic]>([])
    var all: [Qcow2Diagnostic] { received.withLock { $0 } }
    var sink: Qcow2Diagnostics.Sink { { [self] diagnostic in received.withLock { $0.append(diagnostic) } } }
}

@Suite struct CommitAbortReportTests {
    @Test func aHeaderThatCannotBePutBackIsReported() throws {
        try #require(getuid() == 0, "this test mounts a tmpfs to make a full file system: run it as root")
        let images = try ScenarioImages()
        // The images move onto a 2 MiB tmpfs at the same paths.
        let directory = images.scratch.path, saved = directory + ".saved"
        try Tool.run(["cp", "-a", directory, saved])
        try Tool.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", directory])
        defer {
            withExtendedLifetime(images) { _ = try? Tool.run(["umount", directory], check: false) }
            try? FileManager.default.removeItem(atPath: saved)
        }
        try Tool.run(["sh", "-c", "cp --sparse=always '\(saved)'/* '\(directory)'/"])

        let graph = try images.blockdevGraph()
        let driver = try graph.makeCommitDriver(CommitIntermediateTests.request(images))
        try driver.run(CommitTestContext())
        try driver.prepare()
        let top = GraphDiagnostics(), top2 = GraphDiagnostics()
        graph.node(named: "top")?.qcow2?.diagnosticSink = top.sink
        graph.node(named: "top2")?.qcow2?.diagnosticSink = top2.sink
        // top2's header cluster is a hole again past its first page, and
        // the file system is full: its old header cannot be written back.
        try Tool.run(["fallocate", "--punch-hole", "--offset", "4096", "--length", "61440", images.ovl2])
        try Tool.run(["sh", "-c", "dd if=/dev/zero of='\(directory)/fill' bs=4k 2>/dev/null; true"])
        driver.abort()
        driver.clean()
        #expect(top2.all == [Qcow2Diagnostic(.errorReport, "Could not update backing file link: No space left on device")])
        #expect(top.all.isEmpty)

        try FileManager.default.removeItem(atPath: directory + "/fill")
        try graph.closeAll()
        // top's header was put back (top2's is whatever part of the write
        // the kernel took before it ran out of space).
        #expect(try Tool.backing(of: images.top).file == images.mid)
    }
}
