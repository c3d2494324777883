// Shutting the graph down (QEMU's bdrv_close_all on quit): every node is
// flushed and closed once, overlays before what they read from, so qcow2
// images write back their metadata and clear their dirty bits.

import Qcow2

extension BlockGraph {
    /// Flushes and closes every node and empties the graph. Every node is
    /// closed even if some fail; the first error is thrown afterwards.
    public func closeAll() throws {
        var firstError: Error?
        // Newest first: a node's parents were opened after it.
        for node in nodes.reversed() {
            do { try node.flush() } catch { firstError = firstError ?? error }
            node.qcow2?.attachBacking(nil)
            do { try close(node) } catch { firstError = firstError ?? error }
        }
        for node in nodes {
            node.backing = nil
            node.file = nil
        }
        nodes = []
        monitorOwned = []
        drives = []
        claims = []
        if let firstError { throw firstError }
    }
}
