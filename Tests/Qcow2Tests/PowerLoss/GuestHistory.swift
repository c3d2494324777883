// What the guest may read after a power failure: the guest's view of the
// disk taken through the live image after every guest request (per-sector
// hashes and the disk size), with where in the file's log each was taken.
// A crash state cut at log position q must read, sector by sector, as one of
// the views from the last one a completed guest flush made durable (taken at
// or before q) to the first one taken after q: what a flush acknowledged is
// intact, and a sector written since reads as one of its values since, never
// a third value. A write acknowledged with FUA (forced unit access) makes
// its own sectors durable, not the others: from the view taken after it
// (at or before q), those sectors read as that view or a later one.
// Views rather than a model of each request's semantics, so
// that discard, zero writes, snapshot apply and resize need no model (a
// shrink writes the new size before it discards the tail, so no state reads
// the old size over a discarded tail, as QEMU 7.2's order would).
@testable import Qcow2

struct GuestView {
    let size: UInt64
    /// One hash per 512-byte sector.
    let sectors: [UInt64]

    static let sectorSize = 512

    init(size: UInt64, sectors: [UInt64]) {
        self.size = size
        self.sectors = sectors
    }

    /// Reads the whole guest disk of `image`.
    init(of image: BlockImage) throws {
        size = image.size
        let total = Int(size)
        var hashes: [UInt64] = []
        hashes.reserveCapacity(total / Self.sectorSize)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset = 0
        while offset < total {
            let count = min(buffer.count, total - offset)
            try buffer.withUnsafeMutableBytes {
                try image.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<count]), at: UInt64(offset))
            }
            var start = 0
            while start < count {
                hashes.append(Self.hash(buffer[start..<min(start + Self.sectorSize, count)]))
                start += Self.sectorSize
            }
            offset += count
        }
        sectors = hashes
    }

    /// FNV-1a over 64-bit words (the tail byte by byte): enough to tell
    /// sector contents apart in a test, and cheap in a debug build.
    static func hash(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.withUnsafeBytes { raw in
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            let words = raw.count / 8
            for i in 0..<words {
                h = (h ^ raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x100_0000_01b3
            }
            for i in (words * 8)..<raw.count { h = (h ^ UInt64(raw[i])) &* 0x100_0000_01b3 }
            return h
        }
    }
}

final class GuestHistory {
    struct Entry {
        /// The file log's length when the view was taken.
        let position: Int
        /// Taken right after a completed guest flush (or of the base).
        let durable: Bool
        let view: GuestView
        let label: String
        /// Sectors made durable by this request alone (a FUA write).
        var pinned: Range<Int>? = nil
    }
    private(set) var entries: [Entry] = []

    func record(_ view: GuestView, position: Int, durable: Bool, label: String, pinned: Range<Int>? = nil) {
        entries.append(Entry(position: position, durable: durable, view: view, label: label, pinned: pinned))
    }

    /// The views a state cut at log position `cut` may read as (see above).
    func candidates(cut: Int) -> ArraySlice<Entry> {
        let first = entries.lastIndex { $0.durable && $0.position <= cut } ?? 0
        var last = first
        while last + 1 < entries.count, entries[last].position <= cut { last += 1 }
        return entries[first...last]
    }

    /// Why `found` is not a state the guest may see after a failure at
    /// `cut`, or nil if it is.
    func mismatch(_ found: GuestView, cut: Int) -> String? {
        let views = candidates(cut: cut)
        guard views.contains(where: { $0.view.size == found.size }) else {
            return "guest size \(found.size), expected one of \(Set(views.map(\.view.size)).sorted())"
        }
        // Where a FUA write made a sector durable since the last flush.
        func from(_ index: Int) -> Int {
            views.lastIndex { $0.position <= cut && $0.pinned?.contains(index) == true } ?? views.startIndex
        }
        var bad: [Int] = []
        for (index, hash) in found.sectors.enumerated()
        where !views[from(index)...].contains(where: { index < $0.view.sectors.count && $0.view.sectors[index] == hash }) {
            bad.append(index)
            if bad.count == 8 { break }
        }
        guard let firstBad = bad.first else { return nil }
        if from(firstBad) != views.startIndex {
            return "guest sectors \(bad.map(String.init).joined(separator: ","))\(bad.count == 8 ? ",..." : "") read as "
                + "a value older than the FUA write '\(views[from(firstBad)].label)' acknowledged (or a third value)"
        }
        let guaranteed = views.first!
        let flushed = views.count == 1 || views.dropFirst().allSatisfy {
            firstBad >= $0.view.sectors.count || $0.view.sectors[firstBad] == guaranteed.view.sectors[firstBad]
        }
        return "guest sectors \(bad.map(String.init).joined(separator: ","))\(bad.count == 8 ? ",..." : "") read as a third value"
            + (flushed ? " (sector \(firstBad) was acknowledged by a flush: '\(guaranteed.label)')" : "")
            + "; views from '\(guaranteed.label)' to '\(views.last!.label)'"
    }
}
