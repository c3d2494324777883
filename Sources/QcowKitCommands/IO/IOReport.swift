// The figures qemu-io prints: sizes with binary units ("64 KiB", "1.500 KiB",
// "40 bytes"), elapsed times ("00.00 sec", "0:00:00.00"), and the two-line
// report after each request with its throughput. Numbers go through C's
// printf so rounding and "inf"/"nan" come out exactly as in qemu-io.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum IOReport {
    /// printf-style formatting through the C library.
    static func format(_ format: String, _ arguments: CVarArg...) -> String {
        withVaList(arguments) { list in
            var buffer = [CChar](repeating: 0, count: 512)
            let n = buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, list) }
            if n >= 0 && Int(n) >= buffer.count {
                // Only absurd values get here ("%f" of a huge double).
                buffer = [CChar](repeating: 0, count: Int(n) + 1)
                return withVaList(arguments) { again in
                    _ = buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, again) }
                    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                }
            }
            return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
    }

    /// A byte count (or rate) with the largest binary unit it reaches, three
    /// decimals, and ".000" dropped: qemu-io's cvtstr. Values under 1 KiB
    /// use "%f"; anything from the first ".000" on is dropped, as in qemu-io.
    static func size(_ value: Double) -> String {
        let units: [(shift: Int, suffix: String)] = [(60, " EiB"), (50, " PiB"), (40, " TiB"),
                                                     (30, " GiB"), (20, " MiB"), (10, " KiB")]
        var text: String
        var suffix = " bytes"
        if let unit = units.first(where: { value >= Double(Int64(1) << $0.shift) }) {
            text = format("%.3f", value / Double(Int64(1) << unit.shift))
            suffix = unit.suffix
        } else {
            text = format("%f", value)
        }
        if let trim = text.firstRange(of: ".000") { text = String(text[..<trim.lowerBound]) }
        return text + suffix
    }

    /// An elapsed time as qemu-io's timestr: "H:MM:SS.ss" when `fixed` (-C)
    /// or when a whole second passed, else just the fraction ("00.03 sec").
    static func time(_ elapsed: Elapsed, fixed: Bool) -> String {
        let seconds = elapsed.seconds
        let fractional = Double(elapsed.nanoseconds) / 1e9
        if fixed || seconds != 0 {
            return format("%u:%02u:%05.2f", UInt32(truncatingIfNeeded: seconds / 3600),
                          UInt32(truncatingIfNeeded: (seconds % 3600) / 60),
                          Double(seconds % 60) + fractional)
        }
        return format("%05.2f sec", fractional)
    }

    /// The report after a request: "read 512/512 bytes at offset 0" and the
    /// throughput line, or with `machine` (-C) one comma-separated line.
    static func report(_ operation: String, elapsed: Elapsed, offset: Int64, count: Int64,
                       total: Int64, ops: Int, machine: Bool) -> String {
        let time = self.time(elapsed, fixed: machine)
        let rate = Double(total) / elapsed.totalSeconds
        let opsRate = Double(ops) / elapsed.totalSeconds
        if machine {
            return "\(total),\(ops),\(time)," + format("%.3f,%.3f", rate, opsRate) + "\n"
        }
        return "\(operation) \(total)/\(count) bytes at offset \(offset)\n"
            + "\(size(Double(total))), \(ops) ops; \(time) (\(size(rate))/sec and " + format("%.4f", opsRate) + " ops/sec)\n"
    }

    /// A monotonic-clock interval, kept as seconds and nanoseconds like the
    /// struct timespec qemu-io subtracts.
    struct Elapsed: Equatable {
        var seconds: Int
        var nanoseconds: Int

        var totalSeconds: Double { Double(seconds) + Double(nanoseconds) / 1e9 }

        /// Times `body`.
        static func measure<T>(_ body: () throws -> T) rethrows -> (T, Elapsed) {
            let start = now()
            let result = try body()
            let end = now()
            var seconds = end.tv_sec - start.tv_sec
            var nanoseconds = end.tv_nsec - start.tv_nsec
            if nanoseconds < 0 { nanoseconds += 1_000_000_000; seconds -= 1 }
            return (result, Elapsed(seconds: seconds, nanoseconds: nanoseconds))
        }

        private static func now() -> timespec {
            var t = timespec()
            clock_gettime(CLOCK_MONOTONIC, &t)
            return t
        }
    }
}
