// How a job's worker thread gets back to the thread that owns the graph and
// the job manager (the QMP service's main loop), like QEMU's
// aio_bh_schedule_oneshot onto the main AioContext.

/// Runs work on the main thread, later, in the order it was scheduled.
public protocol JobScheduler: AnyObject, Sendable {
    /// Called from any thread; `work` must run on the main thread, after the
    /// caller returns, and in scheduling order (QMP: g_main_context_invoke
    /// or g_idle_add on the service's context).
    func scheduleOnMainThread(_ work: @escaping @Sendable () -> Void)
}
