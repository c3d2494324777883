// Which parts of the active layer an active commit still has to copy
// (QEMU's dirty bitmap in block/mirror.c): one bit per chunk, set by every
// write through the node (its write observer) and by the initial scan,
// cleared just before the chunk is copied, so a write racing the copy sets
// it again and the chunk is copied once more.

import Synchronization

final class DirtyRanges: Sendable {
    let granularity: UInt64
    let size: UInt64
    private let words: Mutex<[UInt64]>

    init(size: UInt64, granularity: UInt64) {
        self.size = size
        self.granularity = granularity
        let chunks = (size + granularity - 1) / granularity
        words = Mutex([UInt64](repeating: 0, count: Int((chunks + 63) / 64)))
    }

    private var chunkCount: UInt64 { (size + granularity - 1) / granularity }

    /// Marks every chunk [offset, offset + length) touches.
    func mark(offset: UInt64, length: UInt64) {
        guard length > 0, offset < size else { return }
        let first = offset / granularity
        let end = min(offset + min(length, size - offset), size)
        let last = (end - 1) / granularity
        words.withLock { words in
            for chunk in first...last { words[Int(chunk / 64)] |= 1 << (chunk % 64) }
        }
    }

    /// Bytes still to copy.
    var dirtyBytes: UInt64 {
        words.withLock { words in
            var total: UInt64 = 0
            for (index, word) in words.enumerated() where word != 0 {
                var bits = word
                while bits != 0 {
                    let chunk = UInt64(index * 64 + bits.trailingZeroBitCount)
                    bits &= bits - 1
                    total += min(granularity, size - chunk * granularity)
                }
            }
            return total
        }
    }

    /// Clears and returns the first run of dirty chunks, at most `maxBytes`.
    func takeNext(maxBytes: UInt64) -> (offset: UInt64, length: UInt64)? {
        let maxChunks = max(1, maxBytes / granularity)
        let chunks = chunkCount
        return words.withLock { words -> (UInt64, UInt64)? in
            guard let index = words.firstIndex(where: { $0 != 0 }) else { return nil }
            let first = UInt64(index * 64 + words[index].trailingZeroBitCount)
            var chunk = first
            while chunk < chunks, chunk - first < maxChunks, words[Int(chunk / 64)] & (1 << (chunk % 64)) != 0 {
                words[Int(chunk / 64)] &= ~(1 << (chunk % 64))
                chunk += 1
            }
            let offset = first * granularity
            return (offset, min(chunk * granularity, size) - offset)
        }
    }
}
