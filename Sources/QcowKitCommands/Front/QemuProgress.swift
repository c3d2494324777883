// qemu-img's progress line (util/qemu-progress.c, the simple printer):
// "    (P/100%)" and a carriage return on standard output, redrawn when the
// figure has moved by more than the command's step since it was last drawn
// (and at 0 and 100), a line feed when the command ends.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct QemuProgress {
    private let enabled: Bool
    private let minimumStep: Float
    private var current: Float = 0
    private var lastPrinted: Float = 0

    init(enabled: Bool, minimumStep: Float) {
        self.enabled = enabled
        self.minimumStep = minimumStep
    }

    /// qemu_progress_print: with `maximum` 0, `delta` is the new figure;
    /// otherwise `delta` percent of `maximum` is added to it.
    mutating func print(_ delta: Float, maximum: Int) {
        guard enabled else { return }
        let value = maximum == 0 ? delta : current + delta / 100 * Float(maximum)
        current = value
        if value > lastPrinted + minimumStep || value < lastPrinted - minimumStep || value == 0 || value == 100 {
            lastPrinted = value
            Terminal.print(cFormat(value), terminator: "")
            Terminal.flushStandardOutput()
        }
    }

    /// qemu_progress_end.
    func end() {
        guard enabled else { return }
        Terminal.print("")
    }

    private func cFormat(_ value: Float) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([Double(value)]) { vsnprintf(&buffer, buffer.count, "    (%3.2f/100%%)\r", $0) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
