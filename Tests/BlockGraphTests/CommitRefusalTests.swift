// block-commit refusals, with the messages QEMU 7.2 gives for the same
// requests on the acceptance scenario's -blockdev graph.
import Foundation
import Testing
@testable import BlockGraph

@Suite struct CommitRefusalTests {
    static func refusal(_ graph: BlockGraph, _ request: CommitRequest) -> BlockGraphError? {
        do {
            let driver = try graph.makeCommitDriver(request)
            driver.clean()
            return nil
        } catch let error as BlockGraphError {
            return error
        } catch {
            return BlockGraphError("unexpected \(error)")
        }
    }

    @Test func messagesMatchQEMU() throws {
        let images = try ScenarioImages()
        let graph = try images.blockdevGraph()
        defer { try? graph.closeAll() }
        let dir = images.scratch.path
        let cases: [(CommitRequest, String)] = [
            (CommitRequest(device: "mid"), "Need a root block node"),
            (CommitRequest(device: "base"), "Need a root block node"),
            (CommitRequest(device: "top", top: "\(dir)/t.nothere"), "Top image file \(dir)/t.nothere not found"),
            (CommitRequest(device: "top", top: images.mid, topNode: "mid"), "'top-node' and 'top' are mutually exclusive"),
            (CommitRequest(device: "top", topNode: "nonode"), "Cannot find device='' nor node-name='nonode'"),
            (CommitRequest(device: "top", topNode: "top2"), "'top2' is not in this backing file chain"),
            (CommitRequest(device: "top", baseNode: "top", topNode: "mid"), "'top' is not in this backing file chain"),
            (CommitRequest(device: "top", baseNode: "mid", topNode: "mid"), "cannot commit an image into itself"),
            (CommitRequest(device: "top", baseNode: "nonode", topNode: "mid"), "Cannot find device='' nor node-name='nonode'"),
            (CommitRequest(device: "top", base: images.top, topNode: "mid"), "Can't find '\(images.top)' in the backing chain"),
            (CommitRequest(device: "top", base: images.base, baseNode: "base", topNode: "mid"),
             "'base-node' and 'base' are mutually exclusive"),
            (CommitRequest(device: "top", backingFile: "foo"), "'backing-file' specified, but 'top' is the active layer"),
        ]
        for (request, message) in cases {
            #expect(Self.refusal(graph, request) == BlockGraphError(message), "\(request)")
        }
        #expect(Self.refusal(graph, CommitRequest(device: "nodev")) == BlockGraphError("Device 'nodev' not found", isDeviceNotFound: true))
        // Nothing was left held.
        #expect(graph.claims.isEmpty)
    }

    @Test func busyNodesAreRefused() throws {
        let images = try ScenarioImages()
        let graph = try images.blockdevGraph()
        defer { try? graph.closeAll() }
        let running = try graph.makeCommitDriver(CommitRequest(device: "top", top: images.mid))
        #expect(Self.refusal(graph, CommitRequest(device: "top")) == BlockGraphError("Need a root block node"))
        let busy = BlockGraphError("Node 'mid' is busy: block device is in use by block job: commit")
        #expect(Self.refusal(graph, CommitRequest(device: "top2")) == busy)
        #expect(Self.refusal(graph, CommitRequest(device: "top2", topNode: "mid")) == busy)
        #expect(throws: BlockGraphError("Node mid is in use")) { try graph.deleteBlockdev(nodeName: "mid") }
        #expect(throws: BlockGraphError("Node 'top' is busy: block device is in use by block job: commit")) {
            try graph.deleteBlockdev(nodeName: "top")
        }
        #expect(throws: BlockGraphError("Node base is in use")) { try graph.deleteBlockdev(nodeName: "base") }
        running.clean()
        #expect(graph.claims.isEmpty)
        let again = try graph.makeCommitDriver(CommitRequest(device: "top2"))
        again.clean()
    }

    @Test func baseThatCannotBeWrittenIsRefused() throws {
        let images = try ScenarioImages()
        let graph = BlockGraph()
        defer { try? graph.closeAll() }
        // A second, read-only node on base's file: base cannot be made writable.
        try graph.addDrive(BlockdevOptions(file: .filename(images.top)), id: "d0")
        try graph.addBlockdev(BlockdevOptions(driver: "qcow2", nodeName: "b2", readOnly: true,
                                              file: .options(.file(images.base))))
        #expect(Self.refusal(graph, CommitRequest(device: "d0")) == BlockGraphError("Failed to get \"write\" lock"))
        #expect(graph.claims.isEmpty)
    }
}

@Suite struct CommitDriverReleaseTests {
    /// A driver the job layer never started (say, an invalid job id) lets
    /// go of its nodes when dropped: base is read-only again, nothing busy.
    @Test func droppedDriverReleasesItsNodes() throws {
        let images = try ScenarioImages(withOvl3: true)
        let graph = try images.driveGraph()
        defer { try? graph.closeAll() }
        do {
            let driver = try graph.makeCommitDriver(CommitIntermediateTests.request(images))
            #expect(!driver.busyNodes.isEmpty)
            #expect(graph.node(named: "mid")?.backing?.isReadOnly == false)
        }
        #expect(graph.claims.isEmpty)
        #expect(graph.node(named: "mid")?.backing?.isReadOnly == true)
        let again = try graph.makeCommitDriver(CommitIntermediateTests.request(images))
        again.clean()
    }
}
