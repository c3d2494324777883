// The service's event loop: a GLib main loop on a context of its own (so
// that several services, as in tests, never share one). This is the only
// file that talks to GLib; everything else sees closures.
//
// GLib is opened on the first MainLoop (GLibLibrary.swift), so making one
// throws if it cannot be.
//
// Threads: a MainLoop is not Sendable: it stays on the thread that runs it.
// Other threads (worker threads of block jobs hopping back) get its
// `handle`, which can only invoke work on the loop and quit it.
import CGLib
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public final class MainLoop {
    /// What an fd watch waits for / reports.
    public struct IOEvents: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = IOEvents(rawValue: 1)
        public static let writable = IOEvents(rawValue: 2)
        /// Hang-up or error: always reported, never needs asking for.
        public static let hangUp = IOEvents(rawValue: 4)
    }

    /// A registered source; `cancel()` removes it (idempotent).
    public final class Source {
        private let glib: GLib
        fileprivate var source: OpaquePointer?
        fileprivate init(_ source: OpaquePointer, glib: GLib) {
            self.source = source
            self.glib = glib
        }
        public func cancel() {
            guard let source else { return }
            self.source = nil
            glib.g_source_destroy(source)
            glib.g_source_unref(source)
        }
        deinit { cancel() }
    }

    private let glib: GLib
    private let context: OpaquePointer
    private let loop: OpaquePointer
    /// What other threads may do with this loop.
    public let handle: MainLoopHandle

    public init() throws(QMPServiceError) {
        glib = try GLib.library()
        context = glib.g_main_context_new()
        loop = glib.g_main_loop_new(context, 0)
        handle = MainLoopHandle(context: context, loop: loop, glib: glib)
    }

    deinit {
        glib.g_main_loop_unref(loop)
        glib.g_main_context_unref(context)
    }

    /// Runs until `quit()`. The loop's thread is the one calling this.
    public func run() {
        glib.g_main_context_push_thread_default(context)
        glib.g_main_loop_run(loop)
        glib.g_main_context_pop_thread_default(context)
    }

    /// Makes `run()` return once the current callback is done.
    public func quit() { handle.quit() }

    /// Calls `handler` whenever `fd` is ready for `events` (or hung up).
    /// The handler returns false to remove the watch.
    public func watch(fd: Int32, for events: IOEvents,
                      _ handler: @escaping (IOEvents) -> Bool) -> Source {
        var condition: UInt32 = G_IO_HUP.rawValue | G_IO_ERR.rawValue | G_IO_NVAL.rawValue
        if events.contains(.readable) { condition |= G_IO_IN.rawValue | G_IO_PRI.rawValue }
        if events.contains(.writable) { condition |= G_IO_OUT.rawValue }
        let source = glib.g_unix_fd_source_new(fd, GIOCondition(rawValue: condition))
        let box = Unmanaged.passRetained(FDCallback(handler)).toOpaque()
        let callback: @convention(c) (Int32, GIOCondition, gpointer?) -> gboolean = { _, condition, data in
            let handler = Unmanaged<FDCallback>.fromOpaque(data!).takeUnretainedValue().handler
            var reported: IOEvents = []
            let raw = condition.rawValue
            if raw & (G_IO_IN.rawValue | G_IO_PRI.rawValue) != 0 { reported.insert(.readable) }
            if raw & G_IO_OUT.rawValue != 0 { reported.insert(.writable) }
            if raw & (G_IO_HUP.rawValue | G_IO_ERR.rawValue | G_IO_NVAL.rawValue) != 0 { reported.insert(.hangUp) }
            return handler(reported) ? qk_g_source_continue : qk_g_source_remove
        }
        // GLib calls an fd source's callback with the fd and condition first.
        glib.g_source_set_callback(source, unsafeBitCast(callback, to: GSourceFunc.self), box, { data in
            Unmanaged<FDCallback>.fromOpaque(data!).release()
        })
        _ = glib.g_source_attach(source, context)
        return Source(source, glib: glib)
    }

    /// Calls `handler` on the loop's thread whenever `signal` arrives
    /// (g_unix_signal: the handler runs from the loop, not in signal context).
    /// The signal is unblocked on the calling thread: a mask inherited
    /// from the parent (test runners, some supervisors block SIGTERM) must
    /// not make the service deaf to it.
    public func onSignal(_ signal: Int32, _ handler: @escaping () -> Void) -> Source {
        let source = glib.g_unix_signal_source_new(signal)
        attachCallback(source, to: context, once: false, glib: glib, handler)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        return Source(source, glib: glib)
    }

    /// Calls `handler` once after `milliseconds`.
    public func after(milliseconds: UInt32, _ handler: @escaping () -> Void) -> Source {
        let source = glib.g_timeout_source_new(milliseconds)
        attachCallback(source, to: context, once: true, glib: glib, handler)
        return Source(source, glib: glib)
    }

    /// Runs `work` on the loop's thread at its next iteration; never before
    /// returning, so callers see QEMU's bottom-half ordering.
    public func invoke(_ work: @escaping () -> Void) {
        let source = glib.g_idle_source_new()
        attachCallback(source, to: context, once: true, glib: glib, work)
        glib.g_source_unref(source)
    }
}

/// The part of a MainLoop other threads may use: GLib's context and loop are
/// thread-safe for attaching sources and quitting.
// @unchecked: C handles, used only through GLib calls documented thread-safe.
public final class MainLoopHandle: @unchecked Sendable {
    private let glib: GLib
    private let context: OpaquePointer
    private let loop: OpaquePointer

    fileprivate init(context: OpaquePointer, loop: OpaquePointer, glib: GLib) {
        self.glib = glib
        self.context = glib.g_main_context_ref(context)
        self.loop = glib.g_main_loop_ref(loop)
    }

    deinit {
        glib.g_main_loop_unref(loop)
        glib.g_main_context_unref(context)
    }

    /// Runs `work` on the loop's thread at its next iteration. Callable from
    /// any thread; never runs `work` before returning, even on the loop's
    /// own thread, so callers see QEMU's bottom-half ordering.
    public func invoke(_ work: @escaping @Sendable () -> Void) {
        let source = glib.g_idle_source_new()
        attachCallback(source, to: context, once: true, glib: glib, work)
        glib.g_source_unref(source)
    }

    /// Makes the loop's `run()` return once its current callback is done.
    public func quit() { glib.g_main_loop_quit(loop) }
}

/// Runs `work` from `source` on `context`'s loop, once or on every dispatch.
private func attachCallback(_ source: OpaquePointer, to context: OpaquePointer, once: Bool, glib: GLib,
                            _ work: @escaping () -> Void) {
    let box = Unmanaged.passRetained(Callback(work, once: once)).toOpaque()
    let callback: @convention(c) (gpointer?) -> gboolean = { data in
        let callback = Unmanaged<Callback>.fromOpaque(data!).takeUnretainedValue()
        callback.work()
        return callback.once ? qk_g_source_remove : qk_g_source_continue
    }
    glib.g_source_set_callback(source, callback, box, { data in
        Unmanaged<Callback>.fromOpaque(data!).release()
    })
    _ = glib.g_source_attach(source, context)
}

private final class FDCallback {
    let handler: (MainLoop.IOEvents) -> Bool
    init(_ handler: @escaping (MainLoop.IOEvents) -> Bool) { self.handler = handler }
}

private final class Callback {
    let work: () -> Void
    let once: Bool
    init(_ work: @escaping () -> Void, once: Bool) { self.work = work; self.once = once }
}
