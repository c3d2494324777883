// Opening nodes as -blockdev and -drive do, names, order and references.
import Foundation
import Testing
import Qcow2
@testable import BlockGraph

@Suite struct GraphOpeningTests {
    @Test func blockdevNodesAndOrder() throws {
        let images = try ScenarioImages()
        let graph = try images.blockdevGraph()
        defer { try? graph.closeAll() }
        let names = graph.namedNodes.map(\.nodeName)
        #expect(names.count == 8)
        // Newest first, each format node followed by its file node.
        let formats = stride(from: 0, to: 8, by: 2).map { names[$0] }
        #expect(formats == ["top2", "top", "mid", "base"])
        for i in stride(from: 1, to: 8, by: 2) {
            #expect(names[i].hasPrefix("#block"))
            #expect(names[i].count >= "#block".count + 3)
            #expect(graph.namedNodes[i].driver == "file")
            #expect(graph.namedNodes[i - 1].file === graph.namedNodes[i])
        }
        let mid = try #require(graph.node(named: "mid"))
        #expect(graph.node(named: "top")?.backing === mid)
        #expect(graph.node(named: "top2")?.backing === mid)
        #expect(mid.backing === graph.node(named: "base"))
        #expect(graph.namedNodes.allSatisfy { !$0.isReadOnly })
        // Reads go through the shared chain.
        let top = try #require(graph.node(named: "top"))
        #expect(try top.read(4, at: 1 << 20) == [0x55, 0x55, 0x55, 0x55])
    }

    @Test func driveOpensTheChainFromHeaders() throws {
        let images = try ScenarioImages(withOvl3: true)
        let graph = try images.driveGraph()
        defer { try? graph.closeAll() }
        let nodes = graph.namedNodes
        // top-file, top, mid-file, mid, base-file, base, ovl3-file, top2, ovl2-file, ovl2: newest first.
        #expect(nodes.map(\.filename) == [images.ovl2, images.ovl2, images.ovl3, images.ovl3, images.base, images.base,
                                           images.mid, images.mid, images.top, images.top])
        #expect(nodes.map(\.driver) == ["qcow2", "file", "qcow2", "file", "qcow2", "file", "qcow2", "file", "qcow2", "file"])
        let mid = try #require(graph.node(named: "mid"))
        #expect(mid.isReadOnly)
        #expect(mid.file?.isReadOnly == true)
        #expect(graph.node(named: "top")?.isReadOnly == false)
        let ovl2 = nodes[0]
        #expect(ovl2.nodeName.hasPrefix("#block"))
        #expect(ovl2.isReadOnly)
        #expect(ovl2.backing === mid)
        #expect(graph.node(named: "top2")?.backing === ovl2)
        #expect(try graph.node(named: "top2")?.read(2, at: 1 << 20) == [0x55, 0x55])
    }

    @Test func namesAreCheckedAsQEMUChecksThem() throws {
        let images = try ScenarioImages()
        let graph = BlockGraph()
        defer { try? graph.closeAll() }
        try graph.addBlockdev(ScenarioImages.qcow2(images.base, "base"))
        #expect(throws: BlockGraphError("Duplicate nodes with node-name='base'")) {
            try graph.addBlockdev(ScenarioImages.qcow2(images.mid, "base"))
        }
        #expect(throws: BlockGraphError("Invalid node-name: '1x'")) {
            try graph.addBlockdev(ScenarioImages.qcow2(images.mid, "1x"))
        }
        #expect(throws: BlockGraphError("'node-name' must be specified for the root node")) {
            try graph.addBlockdev(BlockdevOptions(driver: "qcow2", file: .options(.file(images.mid))))
        }
        #expect(throws: BlockGraphError("Node name too long")) {
            try graph.addBlockdev(ScenarioImages.qcow2(images.mid, String(repeating: "a", count: 32)))
        }
        // A failed open leaves nothing behind.
        #expect(graph.namedNodes.count == 2)
        let lone = images.scratch.file("lone.qcow2")
        try Tool.create(lone)
        try graph.addDrive(BlockdevOptions(driver: "qcow2", file: .filename(lone)), id: "drive0")
        #expect(throws: BlockGraphError("node-name=drive0 is conflicting with a device id")) {
            try graph.addBlockdev(ScenarioImages.qcow2(images.ovl2, "drive0"))
        }
        #expect(throws: BlockGraphError("Device with id 'drive0' already exists")) {
            try graph.addDrive(BlockdevOptions(file: .filename(images.ovl2)), id: "drive0")
        }
        #expect(throws: BlockGraphError("Device name 'base' conflicts with an existing node name")) {
            try graph.addDrive(BlockdevOptions(file: .filename(images.ovl2)), id: "base")
        }
        #expect(try graph.lookup(device: "drive0").filename == lone)
        // The chain below top opens base read-only, which base's writable node refuses, as in QEMU.
        #expect(throws: BlockGraphError("Could not open backing file: Could not open backing file: Failed to get shared \"write\" lock")) {
            try graph.addDrive(BlockdevOptions(file: .filename(images.top)), id: nil)
        }
        #expect(throws: BlockGraphError("Device 'nope' not found", isDeviceNotFound: true)) {
            try graph.lookup(device: "nope")
        }
    }

    @Test func unreferencedNodesAreClosed() throws {
        let images = try ScenarioImages()
        let graph = try images.blockdevGraph()
        defer { try? graph.closeAll() }
        #expect(throws: BlockGraphError("Block device mid is in use")) { try graph.deleteBlockdev(nodeName: "mid") }
        try graph.deleteBlockdev(nodeName: "top2")
        try graph.deleteBlockdev(nodeName: "top")
        // The user-named mid stays while the monitor holds it.
        #expect(graph.namedNodes.map(\.nodeName).filter { !$0.hasPrefix("#") } == ["mid", "base"])
        try graph.deleteBlockdev(nodeName: "mid")
        #expect(graph.namedNodes.count == 2)
        #expect(throws: BlockGraphError("Failed to find node with node-name='mid'")) {
            try graph.deleteBlockdev(nodeName: "mid")
        }
    }

    @Test func failedBackingOpenLeavesTheGraphAsItWas() throws {
        let scratch = try GraphScratch()
        let overlay = scratch.file("overlay.qcow2")
        try Tool.create(scratch.file("gone.qcow2"))
        try Tool.create(overlay, backing: scratch.file("gone.qcow2"))
        try FileManager.default.removeItem(atPath: scratch.file("gone.qcow2"))
        let graph = BlockGraph()
        #expect(throws: BlockGraphError("Could not open backing file: Could not open '\(scratch.file("gone.qcow2"))': No such file or directory")) {
            try graph.addDrive(BlockdevOptions(file: .filename(overlay)), id: nil)
        }
        #expect(graph.namedNodes.isEmpty)
        // backing=null opens it without.
        let node = try graph.addBlockdev(BlockdevOptions(driver: "qcow2", nodeName: "o", file: .options(.file(overlay)), backing: .none))
        #expect(node.backing == nil)
        try graph.closeAll()
    }

    @Test func backingLoopsAreRefused() throws {
        let scratch = try GraphScratch()
        let a = scratch.file("a.qcow2"), b = scratch.file("b.qcow2")
        try Tool.create(a)
        try Tool.create(b, backing: a)
        try Tool.run(["qemu-img", "rebase", "-u", "-b", b, "-F", "qcow2", a])
        let graph = BlockGraph()
        #expect(throws: Qcow2Error.backingChainLoop(path: b)) {
            try graph.addDrive(BlockdevOptions(file: .filename(b)), id: nil)
        }
        #expect(graph.namedNodes.isEmpty)
    }
}

@Suite struct GraphSharedFileTests {
    @Test func secondFormatNodeOverAWrittenFileIsRefused() throws {
        let scratch = try GraphScratch()
        let path = scratch.file("solo.qcow2")
        try Tool.create(path, size: "16M")
        let graph = BlockGraph()
        defer { try? graph.closeAll() }
        try graph.addBlockdev(.file(path, nodeName: "f"))
        try graph.addBlockdev(BlockdevOptions(driver: "qcow2", nodeName: "a", file: .node("f")))
        let conflict = { (writer: String, other: String) in
            BlockGraphError("Permission conflict on node 'f': permissions 'write, resize' are both required by node "
                + "'\(writer)' (uses node 'f' as 'file' child) and unshared by node '\(other)' (uses node 'f' as 'file' child).")
        }
        #expect(throws: conflict("a", "b")) {
            try graph.addBlockdev(BlockdevOptions(driver: "qcow2", nodeName: "b", file: .node("f")))
        }
        #expect(throws: conflict("a", "c")) {
            try graph.addBlockdev(BlockdevOptions(driver: "qcow2", nodeName: "c", readOnly: true, file: .node("f")))
        }
        #expect(throws: BlockGraphError("Block device f is in use")) { try graph.deleteBlockdev(nodeName: "f") }
        #expect(throws: BlockGraphError("Parameter 'backing' is unexpected")) {
            try graph.addBlockdev(BlockdevOptions(driver: "raw", nodeName: "r", file: .options(.file(path)), backing: .none))
        }
        #expect(throws: BlockGraphError("Unknown driver 'vmdk'")) {
            try graph.addBlockdev(BlockdevOptions(driver: "vmdk", nodeName: "v", file: .node("f")))
        }
        #expect(graph.namedNodes.map(\.nodeName) == ["a", "f"])
    }
}
