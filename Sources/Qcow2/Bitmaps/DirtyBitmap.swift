// A dirty bitmap in memory (QEMU's BdrvDirtyBitmap over its HBitmap): one
// bit for each `granularity` bytes of a guest of `size` bytes, set when the
// guest changes that chunk. Kept as pages of 64-bit words allocated on the
// first bit set in them, so that a mostly clean bitmap of a large disk costs
// little; the largest QEMU accepts (512 MiB of bits) bounds each one, and
// Qcow2Limits.maxBitmapMemory all of an image's together. The on-disk form is the bits in order, least significant bit of
// each byte first (QEMU's little-endian serialization).

package struct DirtyBitmap: Sendable, Equatable {
    package var name: String
    /// Bytes covered by one bit: a power of two, 512 to 2 GiB.
    package let granularity: UInt64
    /// The guest size the bitmap covers (QEMU's bdrv_dirty_bitmap_size).
    package private(set) var size: UInt64
    /// Guest writes set bits only in enabled bitmaps (the `auto` flag on disk).
    package var isEnabled: Bool
    package var isPersistent: Bool
    /// Found `in-use` on open: its bits are unknown, so it is neither used
    /// nor stored again (QEMU's inconsistent bitmaps).
    package var isInconsistent: Bool
    /// Taken by an operation under way (a removal inside a QMP transaction):
    /// QEMU's busy bitmaps, refused by every other operation.
    package var isBusy = false

    static let wordsPerPage = 512
    static let bitsPerPage = UInt64(wordsPerPage * 64)
    private var pages: [UInt64: [UInt64]] = [:]

    package init(name: String, granularity: UInt64, size: UInt64, isEnabled: Bool = true,
                 isPersistent: Bool = true, isInconsistent: Bool = false) {
        precondition(granularity >= 512 && granularity & (granularity - 1) == 0)
        self.name = name
        self.granularity = granularity
        self.size = size
        self.isEnabled = isEnabled
        self.isPersistent = isPersistent
        self.isInconsistent = isInconsistent
    }

    package var granularityBits: UInt8 { UInt8(granularity.trailingZeroBitCount) }

    /// The number of bits (chunks of the guest, the last one possibly partial).
    package var bitCount: UInt64 { divideRoundingUp(size, granularity) }

    package var isEmpty: Bool { pages.values.allSatisfy { $0.allSatisfy { $0 == 0 } } }

    /// Whether bit `index` is set.
    package func bit(_ index: UInt64) -> Bool {
        guard let page = pages[index / Self.bitsPerPage] else { return false }
        let inPage = index % Self.bitsPerPage
        return page[Int(inPage / 64)] & (1 << (inPage % 64)) != 0
    }

    /// Marks the chunks touching guest bytes `offset..<offset+length`
    /// (clipped to the bitmap: hbitmap_set).
    package mutating func setDirty(offset: UInt64, length: UInt64) {
        guard length > 0, offset < size else { return }
        let end = length > size - offset ? size : offset + length
        setBits(offset / granularity, through: (end - 1) / granularity)
    }

    /// Sets bits `first...last`.
    mutating func setBits(_ first: UInt64, through last: UInt64) {
        var index = first
        while index <= last {
            let pageIndex = index / Self.bitsPerPage
            let pageEnd = min(last, (pageIndex + 1) * Self.bitsPerPage - 1)
            var page = pages.removeValue(forKey: pageIndex) ?? [UInt64](repeating: 0, count: Self.wordsPerPage)
            var bit = index % Self.bitsPerPage
            let lastBit = pageEnd % Self.bitsPerPage
            while bit <= lastBit {
                if bit % 64 == 0 && lastBit - bit >= 63 {
                    page[Int(bit / 64)] = ~0
                    bit += 64
                } else {
                    page[Int(bit / 64)] |= 1 << (bit % 64)
                    bit += 1
                }
            }
            pages[pageIndex] = page
            index = pageEnd + 1
        }
    }

    /// Clears every bit (block-dirty-bitmap-clear).
    package mutating func clear() { pages.removeAll() }

    /// The set bits' ranges, in order, as first and last bit index.
    package func dirtyRuns() -> [(first: UInt64, last: UInt64)] {
        var runs: [(first: UInt64, last: UInt64)] = []
        for pageIndex in pages.keys.sorted() {
            let page = pages[pageIndex]!
            for (w, word) in page.enumerated() where word != 0 {
                let wordStart = pageIndex * Self.bitsPerPage + UInt64(w) * 64
                if word == ~0 {
                    // A full word extends or starts a run at once.
                    if let lastRun = runs.last, lastRun.last + 1 == wordStart {
                        runs[runs.count - 1].last = wordStart + 63
                    } else {
                        runs.append((wordStart, wordStart + 63))
                    }
                    continue
                }
                var bits = word
                while bits != 0 {
                    let b = UInt64(bits.trailingZeroBitCount)
                    bits &= bits - 1
                    let index = pageIndex * Self.bitsPerPage + UInt64(w) * 64 + b
                    if let lastRun = runs.last, lastRun.last + 1 == index {
                        runs[runs.count - 1].last = index
                    } else {
                        runs.append((index, index))
                    }
                }
            }
        }
        return runs
    }

    /// The dirty guest byte ranges (clipped to the size), in order.
    package func dirtyRanges() -> [(offset: UInt64, length: UInt64)] {
        dirtyRuns().map { run in
            let start = run.first * granularity
            return (start, min(size, (run.last + 1) * granularity) - start)
        }
    }

    /// Adds `source`'s dirty ranges, at this bitmap's granularity (QEMU's
    /// hbitmap_merge; both cover the same size).
    package mutating func merge(_ source: DirtyBitmap) {
        if source.granularity == granularity {
            for (key, page) in source.pages {
                var mine = pages[key] ?? [UInt64](repeating: 0, count: Self.wordsPerPage)
                for i in mine.indices { mine[i] |= page[i] }
                pages[key] = mine
            }
            return
        }
        for range in source.dirtyRanges() { setDirty(offset: range.offset, length: range.length) }
    }

    /// Follows a resize of the guest (hbitmap_truncate): new chunks are
    /// clean, chunks past a smaller end are dropped.
    package mutating func truncate(to newSize: UInt64) {
        let newBits = divideRoundingUp(newSize, granularity)
        size = newSize
        for key in pages.keys {
            let first = key * Self.bitsPerPage
            if first >= newBits {
                pages[key] = nil
            } else if first + Self.bitsPerPage > newBits {
                var page = pages[key]!
                for bit in (newBits - first)..<Self.bitsPerPage { page[Int(bit / 64)] &= ~(1 << (bit % 64)) }
                pages[key] = page
            }
        }
    }

    // MARK: Serialization (one bitmap cluster at a time)

    /// The bytes of the serialized bitmap (QEMU's serialization size: whole
    /// 64-bit words).
    var serializedSize: UInt64 { divideRoundingUp(bitCount, 64) * 8 }

    /// Whether any bit in `first..<end` is set.
    func hasDirtyBits(from first: UInt64, to end: UInt64) -> Bool {
        var pageIndex = first / Self.bitsPerPage
        while pageIndex * Self.bitsPerPage < end {
            if let page = pages[pageIndex] {
                let lo = max(first, pageIndex * Self.bitsPerPage) - pageIndex * Self.bitsPerPage
                let hi = min(end, (pageIndex + 1) * Self.bitsPerPage) - pageIndex * Self.bitsPerPage
                var bit = lo
                while bit < hi {
                    if bit % 64 == 0 && hi - bit >= 64 {
                        if page[Int(bit / 64)] != 0 { return true }
                        bit += 64
                    } else {
                        if page[Int(bit / 64)] & (1 << (bit % 64)) != 0 { return true }
                        bit += 1
                    }
                }
            }
            pageIndex += 1
        }
        return false
    }

    /// The first bit from `first` (below `end`) that is set (`set`) or
    /// clear (`!set`); `end` if there is none. Clean pages are skipped whole.
    package func firstBit(_ set: Bool, from first: UInt64, before end: UInt64) -> UInt64 {
        var index = first
        while index < end {
            let pageIndex = index / Self.bitsPerPage
            let pageStart = pageIndex * Self.bitsPerPage
            guard let page = pages[pageIndex] else {
                if !set { return index }
                index = pageStart + Self.bitsPerPage
                continue
            }
            var w = Int((index - pageStart) / 64)
            var word = (set ? page[w] : ~page[w]) & (~0 << ((index - pageStart) % 64))
            while word == 0 && w + 1 < Self.wordsPerPage {
                w += 1
                word = set ? page[w] : ~page[w]
            }
            if word != 0 { return min(end, pageStart + UInt64(w) * 64 + UInt64(word.trailingZeroBitCount)) }
            index = pageStart + Self.bitsPerPage
        }
        return end
    }

    /// The run of guest bytes from `offset` (below `end`) whose chunks are
    /// all dirty or all clean, and which of the two; dirty runs end at most
    /// `maxDirty` bytes on (hbitmap_next_dirty_area's limit). Past `size`
    /// everything is clean.
    package func run(at offset: UInt64, end: UInt64, maxDirty: UInt64 = .max) -> (length: UInt64, dirty: Bool) {
        let limit = min(end, size)
        guard offset < limit else { return (end - offset, false) }
        let index = offset / granularity
        let dirty = bit(index)
        let next = firstBit(!dirty, from: index + 1, before: bitCount)
        let runEnd = next >= bitCount ? limit : min(limit, next * granularity)
        let length = runEnd - offset
        return (dirty ? min(length, maxDirty) : length, dirty)
    }

    /// `byteCount` serialized bytes starting at bit `first` (a multiple of 64).
    func serialize(fromBit first: UInt64, byteCount: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: byteCount)
        for w in 0..<(byteCount / 8) {
            let index = first + UInt64(w) * 64
            guard let page = pages[index / Self.bitsPerPage] else { continue }
            let word = page[Int((index % Self.bitsPerPage) / 64)]
            guard word != 0 else { continue }
            for b in 0..<8 { bytes[w * 8 + b] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(b))) }
        }
        return bytes
    }

    /// Sets the bits that `bytes` (serialized, starting at bit `first`, a
    /// multiple of 64) has set; bits past the end are ignored.
    mutating func deserialize(_ bytes: [UInt8], fromBit first: UInt64) {
        let total = bitCount
        for w in 0..<(bytes.count / 8) {
            var word: UInt64 = 0
            for b in 0..<8 { word |= UInt64(bytes[w * 8 + b]) << (8 * UInt64(b)) }
            guard word != 0 else { continue }
            let index = first + UInt64(w) * 64
            guard index < total else { break }
            if total - index < 64 { word &= (1 << (total - index)) - 1 }
            let pageIndex = index / Self.bitsPerPage
            var page = pages.removeValue(forKey: pageIndex) ?? [UInt64](repeating: 0, count: Self.wordsPerPage)
            page[Int((index % Self.bitsPerPage) / 64)] |= word
            pages[pageIndex] = page
        }
    }
}
