// Bounded walks over an open image: reading guest data and asking block status
// as qemu-img's map and convert do, but with a cap on requests and bytes, since
// a hostile header can declare an exabyte disk that no walk could finish (nor
// does qemu-img's). Along the way they check what must hold for any image that
// opened: block status answers are well formed, a range reported as zero reads
// as zeroes, and the same bytes come back however a read is cut into requests.

@testable import Qcow2

public enum ImageWalk {
    /// One chain block-status answer, and the range it covers.
    public struct Run {
        public var offset: UInt64
        public var status: ChainBlockStatus
    }

    /// Asks chain block status from `start` on, as `qemu-img map` does, for at
    /// most `maxSteps` answers. Stops at the first error (returned with the runs).
    public static func map(_ image: BlockImage, from start: UInt64 = 0, maxSteps: Int) -> (runs: [Run], error: Error?) {
        var runs: [Run] = []
        var offset = start
        let size = image.size
        let depth = image.chain.count
        while offset < size && runs.count < maxSteps {
            let status: ChainBlockStatus
            do { status = try image.chainBlockStatus(at: offset, length: size - offset) } catch {
                return (runs, error)
            }
            let length = status.status.length
            fuzzRequire(length > 0 && length <= size - offset,
                        "block status at \(offset) of \(size) gave length \(length)")
            fuzzRequire(status.depth >= 0 && status.depth < depth, "depth \(status.depth) in a chain of \(depth)")
            runs.append(Run(offset: offset, status: status))
            offset += length
        }
        return (runs, nil)
    }

    /// Reads [offset, offset + buffer.count) in requests of `piece` bytes, the
    /// first one `skew` bytes long (when that is shorter) so that the rest are
    /// misaligned. Returns the ranges, relative to `offset`, of the requests
    /// that succeeded.
    public static func read(_ image: BlockImage, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer,
                            piece: Int, skew: Int) -> [Range<Int>] {
        var good: [Range<Int>] = []
        var done = 0
        var first = true
        while done < buffer.count {
            var n = min(piece, buffer.count - done)
            if first && skew > 0 && skew < n { n = skew }
            first = false
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)])
            if (try? image.read(into: part, at: offset + UInt64(done))) != nil {
                if let last = good.last, last.upperBound == done {
                    good[good.count - 1] = last.lowerBound..<(done + n)
                } else {
                    good.append(done..<(done + n))
                }
            }
            done += n
        }
        return good
    }

    /// Reads the guest disk twice with different request sizes and checks
    /// that the bytes agree wherever both reads succeeded, then checks that
    /// every range block status calls zero reads as zeroes. Reads at most
    /// `budget` bytes of guest data in all. Returns the guest bytes of the
    /// first `min(size, budget / 2)` bytes, and which ranges of it are good.
    @discardableResult
    public static func readAndCompare(_ image: BlockImage, runs: [Run], budget: Int, piece: Int, skew: Int)
        -> (bytes: [UInt8], good: [Range<Int>])
    {
        let size = image.size
        let head = Int(min(size, UInt64(budget / 2)))
        var a = [UInt8](repeating: 0xA5, count: head)
        var b = [UInt8](repeating: 0x5A, count: head)
        let goodA = a.withUnsafeMutableBytes { read(image, at: 0, into: $0, piece: 1 << 16, skew: 0) }
        let goodB = b.withUnsafeMutableBytes { read(image, at: 0, into: $0, piece: piece, skew: skew) }
        let both = intersect(goodA, goodB)
        for range in both {
            fuzzRequire(Bytes.equal(a[range], b[range]), "reads of \(range) differ with request size \(piece) and skew \(skew)")
        }

        // Zero ranges: in the part read above, compare; past it, read a little
        // of each while the budget lasts.
        var spent = 2 * head
        var scratch = [UInt8]()
        for run in runs where run.status.status.isZero {
            let start = run.offset, length = run.status.status.length
            if start < UInt64(head) {
                let end = Int(min(UInt64(head), start + length))
                for range in intersect(goodA, [Int(start)..<end]) {
                    fuzzRequire(Bytes.allZero(a[range]), "range \(range) is reported zero but holds data")
                }
            } else if spent < budget {
                let n = Int(min(length, UInt64(min(1 << 20, budget - spent))))
                spent += n
                scratch = [UInt8](repeating: 0xA5, count: n)
                let ok = scratch.withUnsafeMutableBytes { (try? image.read(into: $0, at: start)) != nil }
                if ok { fuzzRequire(Bytes.allZero(scratch[...]), "range at \(start) is reported zero but holds data") }
            }
        }
        // Data runs past the head: read some of each, for coverage of far L2 tables.
        for run in runs where run.status.status.isData && run.offset >= UInt64(head) && spent < budget {
            let n = Int(min(run.status.status.length, UInt64(min(1 << 20, budget - spent))))
            spent += n
            scratch = [UInt8](repeating: 0, count: n)
            _ = scratch.withUnsafeMutableBytes { try? image.read(into: $0, at: run.offset) }
        }
        return (a, goodA)
    }

    /// The ranges covered by both lists (each sorted and disjoint).
    public static func intersect(_ x: [Range<Int>], _ y: [Range<Int>]) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var i = 0, j = 0
        while i < x.count && j < y.count {
            let lower = max(x[i].lowerBound, y[j].lowerBound), upper = min(x[i].upperBound, y[j].upperBound)
            if lower < upper { result.append(lower..<upper) }
            if x[i].upperBound < y[j].upperBound { i += 1 } else { j += 1 }
        }
        return result
    }
}
