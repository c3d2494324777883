// qemu-img's -p progress line (util/qemu-progress.c): "    (45.00/100%)\r" on
// standard output, terminal or not, each time the value moved by more than
// the command's minimum step, and at 0 and 100; a newline ends it. Values
// are C floats, summed as qemu-img sums them.

struct QemuProgress {
    private let enabled: Bool
    private let minSkip: Float
    private var current: Float = 0
    private var lastPrint: Float = 0

    init(enabled: Bool, minSkip: Float) {
        self.enabled = enabled
        self.minSkip = minSkip
    }

    /// qemu_progress_print: `delta` percent of `max` more, or (max 0) `delta` outright.
    mutating func print(_ delta: Float, max: Int) {
        guard enabled else { return }
        current = max == 0 ? delta : current + delta / 100 * Float(max)
        if current > lastPrint + minSkip || current < lastPrint - minSkip || current == 0 || current == 100 {
            lastPrint = current
            let hundredths = Int((Double(current) * 100).rounded(.toNearestOrEven))  // printf's "%.2f"
            let fraction = hundredths % 100
            Terminal.print("    (\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)/100%)", terminator: "\r")
            Terminal.flushStandardOutput()
        }
    }

    /// qemu_progress_end.
    func end() {
        if enabled { Terminal.print("") }
    }
}
