// A QMP transaction's bitmap actions undone while guest writes go on: QEMU
// drains guest I/O around a transaction; here writes may land meanwhile, and
// an undo must leave every bitmap that records with them marked.
import Foundation
import Testing
import Qcow2
@testable import BlockGraph

@Suite struct BitmapTransactionTests {
    @Test func undoneDisableKeepsWritesMadeWhileTheBitmapWasOff() throws {
        let scratch = try GraphScratch()
        let path = scratch.file("a.qcow2")
        try Tool.create(path, size: "4M")
        let graph = BlockGraph()
        defer { try? graph.closeAll() }
        let node = try graph.addBlockdev(ScenarioImages.qcow2(path, "n"))
        try graph.addDirtyBitmap(node: "n", name: "b", granularity: 65536, persistent: false, disabled: false)

        let transaction = DirtyBitmapTransaction()
        try graph.prepare(.disable(node: "n", name: "b"), in: transaction)
        // A guest write between the prepare and the abort (a later action failing).
        try node.write([7], at: 3 << 20)
        transaction.abort()

        let bitmap = try #require(graph.dirtyBitmaps(of: node).first)
        #expect(bitmap.recording)
        #expect(bitmap.count == 65536)
    }
}
