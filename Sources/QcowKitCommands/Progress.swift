// qemu-img's progress line (util/qemu-progress.c): with -p, the percentage
// done as "    (NN.NN/100%)" ended by a carriage return, redrawn whenever it
// moved by more than the command's step (and at 0 and 100), and a newline
// at the end. Without -p nothing is printed.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

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
    }

    /// qemu_progress_print: with `max` 0, `delta` is the new value; else the
    /// value grows by `delta` percent of `max`.
    func print(_ delta: Float, max: Int = 0) {
        guard enabled else { return }
        state.withLock { s in
            let current = max == 0 ? delta : s.current + delta / 100 * Float(max)
            // The value moves on even when it is not drawn (compare's small
            // steps add up to the next line).
            s.current = current
            guard current > s.lastPrint + minSkip || current < s.lastPrint - minSkip
                || current == 0 || current == 100 else { return }
            s.lastPrint = current
            var text = [CChar](repeating: 0, count: 64)
            _ = withVaList([Double(current)]) { vsnprintf(&text, text.count, "    (%3.2f/100%%)\r", $0) }
            fputs(text, stdout)
            fflush(stdout)
        }
    }

    /// Ends the line (qemu_progress_end).
    func end() {
        guard enabled else { return }
        fputs("\n", stdout)
        fflush(stdout)
    }
}
