// The block layer's part of shutting down (QEMU's job_cancel_sync_all then
// bdrv_close_all): jobs cancelled and settled (their events still reach the
// clients), then every image flushed and closed.
import BlockGraph

extension QMPService {
    func settleBlockLayer() {
        jobs.cancelAllAndWait()
        // As bdrv_close_all: closing cannot fail; images reported what they
        // could not write back themselves (Qcow2Diagnostics).
        try? graph.closeAll()
    }
}
