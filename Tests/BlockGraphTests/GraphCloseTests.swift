// Closing: closeAll writes back and clears dirty bits; raw nodes; data
// written through nodes reaches the images.
import Foundation
import Testing
import Qcow2
@testable import BlockGraph

@Suite struct GraphCloseTests {
    @Test func closeAllClearsTheDirtyBit() throws {
        let scratch = try GraphScratch()
        let path = scratch.file("lazy.qcow2")
        try Tool.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", path, "16M"])
        let graph = BlockGraph()
        let node = try graph.addDrive(BlockdevOptions(file: .filename(path)), id: "d0")
        #expect(node.driver == "qcow2")
        try node.write([UInt8](repeating: 0xab, count: 70_000), at: 12345)
        // Lazy refcounts: the image is dirty while open.
        let info = try graph.deviceInfo(node)
        #expect(info.image.info.format == "qcow2")
        try graph.closeAll()
        #expect(graph.namedNodes.isEmpty)
        try Tool.checkClean(path)
        let header = try Qcow2Image.open(path: path).header
        #expect(!header.isDirty)
        try Tool.expectPattern(path, 0xab, offset: "12345", length: "70000")
    }

    @Test func rawDriveIsProbed() throws {
        let scratch = try GraphScratch()
        let path = scratch.file("disk.raw")
        try #require(FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 1000)))
        let graph = BlockGraph()
        let node = try graph.addDrive(BlockdevOptions(file: .filename(path)), id: nil)
        #expect(node.driver == "raw")
        #expect(node.size == 1024)
        let info = try graph.deviceInfo(node)
        #expect(info.image.info.virtualSize == 1024)
        #expect(info.image.info.format == "raw")
        #expect(try graph.deviceInfo(try #require(node.file)).image.info.format == "file")
        // A probed raw image refuses to become something else in sector 0.
        #expect(throws: (any Error).self) { try node.write([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3], at: 0) }
        try node.write([1, 2, 3], at: 600)
        try graph.closeAll()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(Array(bytes[600..<603]) == [1, 2, 3])
    }

    @Test func readOnlyNodesRefuseWrites() throws {
        let images = try ScenarioImages()
        let graph = BlockGraph()
        defer { try? graph.closeAll() }
        let top = try graph.addDrive(BlockdevOptions(file: .filename(images.top)), id: "d0")
        let mid = try #require(top.backing)
        #expect(throws: BlockGraphError("Node '\(mid.nodeName)' is read-only")) { try mid.write([1], at: 0) }
    }
}
