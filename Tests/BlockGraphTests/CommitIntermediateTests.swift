// Intermediate commit: the acceptance scenario's two graphs, then the
// images checked with QEMU's own tools.
import Foundation
import Testing
import Qcow2
@testable import BlockGraph

@Suite struct CommitIntermediateTests {
    static func request(_ images: ScenarioImages) -> CommitRequest {
        CommitRequest(device: "top", base: images.base, top: images.mid)
    }

    @Test func blockdevGraphBothOverlaysEndOnBase() throws {
        let images = try ScenarioImages()
        let graph = try images.blockdevGraph()
        let driver = try graph.makeCommitDriver(Self.request(images))
        #expect(driver.jobType == "commit")
        #expect(Set(driver.busyNodes) == ["top", "mid", "base"])
        let context = CommitTestContext()
        try CommitRunner.runToEnd(driver, context)
        #expect(context.progress == (67_108_864, 67_108_864))

        let base = try #require(graph.node(named: "base"))
        #expect(graph.node(named: "top")?.backing === base)
        #expect(graph.node(named: "top2")?.backing === base)
        // mid stays: the monitor holds it.
        #expect(graph.node(named: "mid")?.backing === base)
        #expect(graph.namedNodes.count == 8)
        #expect(!base.isReadOnly)
        for name in ["top", "top2"] {
            let node = try #require(graph.node(named: name))
            #expect(try node.read(3, at: 1 << 20) == [0x55, 0x55, 0x55])
            let info = try graph.deviceInfo(node)
            #expect(info.backingFile == images.base)
            #expect(info.backingFileDepth == 1)
            #expect(info.image.info.backingFilename == images.base)
            #expect(info.image.info.fullBackingFilename == images.base)
            #expect(info.image.info.backingFilenameFormat == "qcow2")
            #expect(info.image.backingImage?.info.filename == images.base)
            #expect(info.image.backingImage?.backingImage == nil)
        }
        // As 191.out lists them: base's file now holds one L2 table and one data cluster.
        let infos = try graph.namedNodes.map { try graph.deviceInfo($0) }
        #expect(infos.map(\.image.info.virtualSize) == [67_108_864, 197_120, 67_108_864, 197_120, 67_108_864, 393_216,
                                                        67_108_864, 393_216])
        #expect(infos.map(\.readOnly) == Array(repeating: false, count: 8))
        #expect(infos.map(\.backingFileDepth) == [1, 0, 1, 0, 1, 0, 0, 0])
        #expect(infos.map(\.file) == [images.ovl2, images.ovl2, images.top, images.top, images.mid, images.mid,
                                       images.base, images.base])
        #expect(infos.allSatisfy { !$0.encryptionKeyMissing && $0.cache == BlockDeviceCacheInfo() && $0.iops == 0 })
        try graph.closeAll()

        for path in [images.base, images.mid, images.top, images.ovl2] { try Tool.checkClean(path) }
        for path in [images.top, images.ovl2] {
            let backing = try Tool.backing(of: path)
            #expect(backing.file == images.base)
            #expect(backing.format == "qcow2")
            try Tool.expectPattern(path, 0x55, offset: "1M", length: "64k")
        }
        try Tool.expectPattern(images.base, 0x55, offset: "1M", length: "64k")
    }

    @Test func driveGraphDropsMidAndRewritesTheReadOnlyOverlay() throws {
        let images = try ScenarioImages(withOvl3: true)
        let graph = try images.driveGraph()
        let driver = try graph.makeCommitDriver(Self.request(images))
        let context = CommitTestContext()
        try CommitRunner.runToEnd(driver, context)
        #expect(context.progress == (67_108_864, 67_108_864))

        #expect(graph.node(named: "mid") == nil)
        let nodes = graph.namedNodes
        #expect(nodes.map(\.filename) == [images.ovl2, images.ovl2, images.ovl3, images.ovl3, images.base, images.base,
                                           images.top, images.top])
        #expect(nodes.map(\.isReadOnly) == [true, true, false, false, true, true, false, false])
        let infos = try nodes.map { try graph.deviceInfo($0) }
        #expect(infos.map(\.backingFileDepth) == [1, 0, 2, 0, 0, 0, 1, 0])
        #expect(infos.map(\.backingFile) == [images.base, nil, images.ovl2, nil, nil, nil, images.base, nil])
        #expect(infos.map(\.image.info.virtualSize) == [67_108_864, 197_120, 67_108_864, 197_120, 67_108_864, 393_216,
                                                        67_108_864, 197_120])
        #expect(infos.map(\.driver) == ["qcow2", "file", "qcow2", "file", "qcow2", "file", "qcow2", "file"])
        // top2's image nests ovl2, then base.
        #expect(infos[2].image.backingImage?.info.filename == images.ovl2)
        #expect(infos[2].image.backingImage?.backingImage?.info.filename == images.base)
        #expect(infos[0].image.info.fullBackingFilename == images.base)
        #expect(infos.allSatisfy { $0.image.info.dirtyFlag == false && $0.image.info.formatSpecific == nil })
        #expect(infos[1].image.info.format == "file" && infos[1].image.info.clusterSize == nil)
        #expect(try graph.node(named: "top2")?.read(1, at: 1 << 20) == [0x55])
        try graph.closeAll()

        for path in [images.base, images.mid, images.top, images.ovl2, images.ovl3] { try Tool.checkClean(path) }
        for path in [images.top, images.ovl2] {
            let backing = try Tool.backing(of: path)
            #expect(backing.file == images.base)
            #expect(backing.format == "qcow2")
        }
        try Tool.expectPattern(images.ovl3, 0x55, offset: "1M", length: "64k")
    }

    @Test func relativeNamesResolveAgainstTheOverlay() throws {
        let images = try ScenarioImages()
        let graph = try images.blockdevGraph()
        defer { try? graph.closeAll() }
        let driver = try graph.makeCommitDriver(CommitRequest(device: "top", base: "t.qcow2.base", top: "t.qcow2.mid"))
        try CommitRunner.runToEnd(driver, CommitTestContext())
        #expect(graph.node(named: "top")?.backing === graph.node(named: "base"))
    }

    @Test func cancelledCommitLeavesEverythingAsItWas() throws {
        let images = try ScenarioImages(withOvl3: true)
        try Tool.qemuIO(images.mid, "write -P 0x44 8M 4M")
        let graph = try images.driveGraph()
        let before = graph.namedNodes.map(\.nodeName)
        let driver = try graph.makeCommitDriver(Self.request(images))
        #expect(graph.node(named: "#block") == nil)
        #expect(throws: JobCancelled.self) {
            try CommitRunner.runToEnd(driver, CommitTestContext(cancelAtPausePoint: 20))
        }
        #expect(graph.namedNodes.map(\.nodeName) == before)
        let mid = try #require(graph.node(named: "mid"))
        #expect(graph.node(named: "top")?.backing === mid)
        // base went back to read-only; nothing is busy any more.
        #expect(mid.backing?.isReadOnly == true)
        #expect(graph.claims.isEmpty)
        try graph.closeAll()
        for path in [images.base, images.mid, images.top, images.ovl2, images.ovl3] { try Tool.checkClean(path) }
        #expect(try Tool.backing(of: images.top).file == images.mid)
        #expect(try Tool.backing(of: images.ovl2).file == images.mid)
        try Tool.expectPattern(images.top, 0x44, offset: "8M", length: "4M")
        try Tool.expectPattern(images.top, 0x55, offset: "1M", length: "64k")
    }

    @Test func smallerBaseIsGrown() throws {
        let scratch = try GraphScratch()
        let base = scratch.file("base.qcow2"), top = scratch.file("top.qcow2"), active = scratch.file("active.qcow2")
        try Tool.create(base, size: "1M")
        try Tool.create(top, size: "3M", backing: base)
        try Tool.create(active, size: "3M", backing: top)
        try Tool.qemuIO(top, "write -P 0x33 2M 64k")
        let graph = BlockGraph()
        try graph.addDrive(BlockdevOptions(file: .filename(active)), id: "d0")
        let driver = try graph.makeCommitDriver(CommitRequest(device: "d0", top: top))
        try CommitRunner.runToEnd(driver, CommitTestContext())
        try graph.closeAll()
        try Tool.checkClean(base)
        #expect(try Tool.run(["qemu-img", "info", base]).output.contains("virtual size: 3 MiB"))
        try Tool.expectPattern(base, 0x33, offset: "2M", length: "64k")
        try Tool.expectPattern(active, 0x33, offset: "2M", length: "64k")
    }
}

@Suite struct CommitHeaderFailureTests {
    /// top2's image has 512-byte clusters, too small for a long backing
    /// name: top's header is rewritten first, then top2's fails, and the
    /// job's abort puts top's back.
    @Test func failedRelinkRollsBackTheHeadersAlreadyRewritten() throws {
        let scratch = try GraphScratch()
        let base = scratch.file("base"), mid = scratch.file("mid"), top = scratch.file("top"), ovl2 = scratch.file("ovl2")
        try Tool.create(base)
        try Tool.create(mid, backing: base)
        try Tool.create(top, backing: mid)
        try Tool.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-b", mid, "-F", "qcow2", ovl2, "64M"])
        try Tool.qemuIO(mid, "write -P 0x55 1M 64k")
        let graph = BlockGraph()
        try graph.addBlockdev(ScenarioImages.qcow2(base, "base"))
        try graph.addBlockdev(ScenarioImages.qcow2(mid, "mid", backing: .node("base")))
        try graph.addBlockdev(ScenarioImages.qcow2(top, "top", backing: .node("mid")))
        try graph.addBlockdev(ScenarioImages.qcow2(ovl2, "top2", backing: .node("mid")))
        let longName = base + String(repeating: "/.", count: 220)
        let driver = try graph.makeCommitDriver(CommitRequest(device: "top", top: mid, backingFile: longName))
        #expect(throws: BlockGraphError("Could not update backing file link: No space left on device")) {
            try CommitRunner.runToEnd(driver, CommitTestContext())
        }
        let midNode = try #require(graph.node(named: "mid"))
        #expect(graph.node(named: "top")?.backing === midNode)
        #expect(graph.node(named: "top2")?.backing === midNode)
        #expect(graph.node(named: "top")?.qcow2?.backingFileName == mid)
        try graph.closeAll()
        for path in [base, mid, top, ovl2] { try Tool.checkClean(path) }
        #expect(try Tool.backing(of: top).file == mid)
        #expect(try Tool.backing(of: ovl2).file == mid)
    }
}
