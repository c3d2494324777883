// The snapshot table as qemu-img prints it ("Snapshot list:" in info, and
// `qemu-img snapshot -l`): fixed-width columns, padded by bytes as C's printf
// pads, the date in local time, the VM clock as hours:minutes:seconds.millis.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

package enum SnapshotListing {
    /// The column titles (no newline).
    package static let header = "ID".padded(to: -10) + "TAG".padded(to: -17) + "VM SIZE".padded(to: 8)
        + "DATE".padded(to: 20) + "VM CLOCK".padded(to: 13) + "ICOUNT".padded(to: 11)

    /// "Snapshot list:", the column titles and a line per snapshot, each
    /// line ending in a newline (qemu-img info, qemu-img snapshot -l).
    package static func table(_ snapshots: [SnapshotInfo]) -> String {
        var out = "Snapshot list:\n" + header + "\n"
        for snapshot in snapshots { out += row(snapshot) + "\n" }
        return out
    }

    /// One snapshot's line (no newline). The ID column is one byte narrower
    /// than its title, with a space after it.
    package static func row(_ snapshot: SnapshotInfo) -> String {
        let vmClock = UInt64(bitPattern: snapshot.vmClockSeconds) &* 1_000_000_000
            &+ UInt64(bitPattern: snapshot.vmClockNanoseconds)
        let seconds = vmClock / 1_000_000_000
        let clock = twoDigits(Int32(truncatingIfNeeded: seconds / 3600)) + ":"
            + twoDigits(Int32(truncatingIfNeeded: (seconds / 60) % 60)) + ":"
            + twoDigits(Int32(truncatingIfNeeded: seconds % 60)) + "."
            + threeDigits(Int32(truncatingIfNeeded: (vmClock / 1_000_000) % 1000))
        let icount = snapshot.icount.map { String($0) } ?? ""
        return snapshot.id.padded(to: -9) + " " + snapshot.name.padded(to: -16) + " "
            + SizeString.format(UInt64(bitPattern: snapshot.vmStateSize)).padded(to: 8)
            + localDate(snapshot.dateSeconds).padded(to: 20) + clock.padded(to: 13) + icount.padded(to: 11)
    }

    /// "%Y-%m-%d %H:%M:%S" in the local time zone (date_sec is 32 bits on disk).
    package static func localDate(_ seconds: Int64) -> String {
        var time = time_t(UInt32(truncatingIfNeeded: seconds))
        var parts = tm()
        localtime_r(&time, &parts)
        var buffer = [CChar](repeating: 0, count: 128)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// "%02d" (a negative number keeps its sign, as printf does).
    private static func twoDigits(_ n: Int32) -> String { zeroPadded(n, 2) }
    private static func threeDigits(_ n: Int32) -> String { zeroPadded(n, 3) }

    private static func zeroPadded(_ n: Int32, _ width: Int) -> String {
        let digits = String(n.magnitude)
        let pad = String(repeating: "0", count: max(0, width - digits.count - (n < 0 ? 1 : 0)))
        return (n < 0 ? "-" : "") + pad + digits
    }
}

extension String {
    /// printf's "%Ns" (right-aligned) for positive `width`, "%-Ns" for
    /// negative; widths count bytes, as C does.
    func padded(to width: Int) -> String {
        let pad = String(repeating: " ", count: max(0, abs(width) - utf8.count))
        return width < 0 ? self + pad : pad + self
    }
}
