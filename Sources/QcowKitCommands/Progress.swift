// qemu-img's progress line (util/qemu-progress.c): with -p, the percentage
// done as "    (NN.NN/100%)" ended by a carriage return, redrawn whenever it
// moved by more than the command's step (and at 0 and 100), and a newline
// at the end. Without -p (or with -q) nothing is printed unless SIGUSR1
// arrives: then the next point that would have been drawn is reported
// once on standard error, ended by a newline (qemu-img's documented way to
// ask a running convert, commit, rebase, amend or compare how far it is;
// with -p, SIGUSR1 keeps its default action, as in qemu-img).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// SIGUSR1 asked for a report (qemu-progress.c's print_pending); set by the
/// signal handler, so only an atomic store happens there.
private let reportRequested = Atomic<Bool>(false)

/// progress_dummy_init: SIGUSR1 requests a report, on whichever thread it
/// lands (and it is unblocked on this one, as QEMU unblocks it).
private func catchReportSignal() {
    #if canImport(Glibc)
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { _ in reportRequested.store(true, ordering: .relaxed) }
    sigfillset(&action.sa_mask)
    action.sa_flags = 0
    sigaction(SIGUSR1, &action, nil)
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGUSR1)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    #endif
}

/// A progress line as qemu-img draws it; thread-safe (convert's workers report).
final class QemuProgress: Sendable {
    private struct State {
        var current: Float = 0
        var lastPrint: Float = 0
    }
    private let enabled: Bool
    /// How far the value must move before it is drawn again (qemu-img: 1.0
    /// for convert, 2.0 for compare and rebase).
    private let minSkip: Float
    private let state = Mutex(State())

    init(enabled: Bool, minSkip: Float) {
        self.enabled = enabled
        self.minSkip = minSkip
        if !enabled { catchReportSignal() }
    }

    /// qemu_progress_print: with `max` 0, `delta` is the new value; else the
    /// value grows by `delta` percent of `max`.
    func print(_ delta: Float, max: Int = 0) {
        state.withLock { s in
            // Past 100 is 100 (sums of float steps overshoot).
            let current = Swift.min(max == 0 ? delta : s.current + delta / 100 * Float(max), 100)
            // The value moves on even when it is not drawn (compare's small
            // steps add up to the next line).
            s.current = current
            guard current > s.lastPrint + minSkip || current < s.lastPrint - minSkip
                || current == 0 || current == 100 else { return }
            s.lastPrint = current
            if enabled {
                fputs(Self.line(current, ending: "\r"), stdout)
                fflush(stdout)
            } else if reportRequested.exchange(false, ordering: .relaxed) {
                fputs(Self.line(current, ending: "\n"), stderr)
            }
        }
    }

    private static func line(_ value: Float, ending: String) -> String {
        var text = [CChar](repeating: 0, count: 64)
        _ = withVaList([Double(value)]) { vsnprintf(&text, text.count, "    (%3.2f/100%%)", $0) }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + ending
    }

    /// Ends the line (qemu_progress_end).
    func end() {
        guard enabled else { return }
        fputs("\n", stdout)
        fflush(stdout)
    }
}
