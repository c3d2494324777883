// block-stream: data pulled up into the device, its header and backing
// link moved down to base, QEMU's refusals.
import Foundation
import Testing
import Qcow2
@testable import BlockGraph

@Suite struct CommitStreamTests {
    @Test func streamIntoTopStopsAtBase() throws {
        let images = try ScenarioImages()
        try Tool.qemuIO(images.base, "write -P 0x44 0 64k")
        let graph = try images.blockdevGraph()
        let top = try #require(graph.node(named: "top"))
        // Written into top before the job: streaming must not overwrite it.
        try top.write([UInt8](repeating: 0x99, count: 4096), at: 1 << 20)
        let driver = try graph.makeStreamDriver(StreamRequest(device: "top", base: images.base))
        #expect(driver.jobType == "stream")
        #expect(Set(driver.busyNodes) == ["top", "mid"])
        let context = CommitTestContext()
        try CommitRunner.runToEnd(driver, context)
        #expect(context.progress == (67_108_864, 67_108_864))
        let base = try #require(graph.node(named: "base"))
        #expect(top.backing === base)
        #expect(try graph.deviceInfo(top).backingFile == images.base)
        #expect(graph.node(named: "mid") != nil)
        #expect(try top.read(2, at: 1 << 20) == [0x99, 0x99])
        #expect(try top.read(1, at: (1 << 20) + 4096) == [0x55])
        #expect(try top.read(1, at: 0) == [0x44])
        try graph.closeAll()
        for path in [images.base, images.mid, images.top, images.ovl2] { try Tool.checkClean(path) }
        #expect(try Tool.backing(of: images.top).file == images.base)
        #expect(try Tool.backing(of: images.top).format == "qcow2")
        // top holds mid's data itself now: reading it alone shows it.
        let alone = try Tool.run(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x55 1052672 61440",
                                  "json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":\"\(images.top)\"}}"])
        #expect(!alone.output.contains("verification failed"))
    }

    @Test func streamTheWholeChainOfADrive() throws {
        let images = try ScenarioImages()
        try Tool.qemuIO(images.base, "write -P 0x44 0 64k")
        let graph = BlockGraph()
        try graph.addDrive(BlockdevOptions(file: .filename(images.top)), id: "d0")
        let driver = try graph.makeStreamDriver(StreamRequest(device: "d0"))
        try CommitRunner.runToEnd(driver, CommitTestContext())
        let top = try graph.lookup(device: "d0")
        #expect(top.backing == nil)
        // mid and base were only the drive's chain: gone.
        #expect(graph.namedNodes.count == 2)
        #expect(try top.read(1, at: 0) == [0x44])
        try graph.closeAll()
        try Tool.checkClean(images.top)
        #expect(try Tool.backing(of: images.top).file == nil)
        try Tool.expectPattern(images.top, 0x55, offset: "1M", length: "64k")
        try Tool.expectPattern(images.top, 0x44, offset: "0", length: "64k")
    }

    @Test func refusalsMatchQEMU() throws {
        let images = try ScenarioImages()
        let graph = try images.blockdevGraph()
        defer { try? graph.closeAll() }
        let dir = images.scratch.path
        let cases: [(StreamRequest, String)] = [
            (StreamRequest(device: "nodev"), "Cannot find device='nodev' nor node-name='nodev'"),
            (StreamRequest(device: "top", base: "x", baseNode: "base"), "'base' and 'base-node' cannot be specified at the same time"),
            (StreamRequest(device: "top", base: "\(dir)/t.nothere"), "Can't find '\(dir)/t.nothere' in the backing chain"),
            (StreamRequest(device: "top", baseNode: "top2"), "Node 'top2' is not a backing image of 'top'"),
            (StreamRequest(device: "top", baseNode: "nonode"), "Cannot find device='' nor node-name='nonode'"),
            (StreamRequest(device: "top", baseNode: "top"), "Node 'top' is not a backing image of 'top'"),
            (StreamRequest(device: "top", backingFile: "foo"), "backing file specified, but streaming the entire chain"),
        ]
        for (request, message) in cases {
            #expect(throws: BlockGraphError(message), "\(request)") { _ = try graph.makeStreamDriver(request) }
        }
        let running = try graph.makeStreamDriver(StreamRequest(device: "mid"))
        #expect(throws: BlockGraphError("Node 'mid' is busy: block device is in use by block job: stream")) {
            _ = try graph.makeStreamDriver(StreamRequest(device: "top"))
        }
        running.clean()
        #expect(graph.claims.isEmpty)
    }
}
