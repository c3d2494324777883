// The block layer's part of shutting down (QEMU's job_cancel_sync_all then
// bdrv_close_all): jobs cancelled and settled (their events still reach the
// clients), then every image flushed and closed.
import BlockGraph

extension QMPService {
    func settleBlockLayer() {
        jobs.cancelAllAndWait()
        do {
            try graph.closeAll()
        } catch {
            ServiceLog.note("closing images: \(error)")
        }
    }
}
