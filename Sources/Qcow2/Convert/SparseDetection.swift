// Which parts of a read buffer a convert writes and which it leaves to zero
// writes (or to the target's zero initialisation): qemu-img's sector-wise
// zero detection with its minimum sparse size (-S) and write alignment. The
// split decides where write requests start and end, and so which clusters a
// qcow2 target allocates; it is kept exactly as qemu-img 7.2 splits.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum SparseDetection {
    static let sector = ConvertSettings.sectorSize

    /// Whether the first sector of `buffer` holds data, and how many sectors
    /// (at most `count`) share that state, the boundary moved to `alignment`
    /// (sectors, a power of two) when it would cut an aligned block:
    /// qemu-img's is_allocated_sectors.
    static func allocatedRun(_ buffer: UnsafeRawBufferPointer, count: Int, sector start: Int64,
                             alignment: Int) -> (isData: Bool, count: Int) {
        guard count > 0 else { return (false, 0) }
        var isZero = isAllZero(sectorAt: 0, of: buffer)
        var i = 1
        while i < count && isAllZero(sectorAt: i, of: buffer) == isZero { i += 1 }
        if i == count { return (!isZero, i) }
        let tail = Int((start + Int64(i)) & Int64(alignment - 1))
        if tail != 0 {
            // A zero run no longer than the tail is rewritten by the data
            // after it anyway (read-modify-write): write it as data now.
            if isZero && i <= tail { isZero = false }
            if !isZero {
                i = min(i + alignment - tail, count)
            } else {
                i -= tail
            }
        }
        return (!isZero, i)
    }

    /// Like `allocatedRun`, but a data run swallows zero runs shorter than
    /// `minimum` sectors, so that small gaps do not split a write:
    /// qemu-img's is_allocated_sectors_min.
    static func dataRun(_ buffer: UnsafeRawBufferPointer, count: Int, minimum: Int, sector start: Int64,
                        alignment: Int) -> (isData: Bool, count: Int) {
        let minimum = min(minimum, count)
        let first = allocatedRun(buffer, count: count, sector: start, alignment: alignment)
        guard first.isData else { return first }
        var used = first.count, checked = first.count
        while checked < count {
            let rest = UnsafeRawBufferPointer(rebasing: buffer[(checked * sector)...])
            let run = allocatedRun(rest, count: count - checked, sector: start + Int64(checked), alignment: alignment)
            checked += run.count
            if run.isData {
                used = checked
            } else if run.count >= minimum {
                break
            }
        }
        return (true, used)
    }

    private static func isAllZero(sectorAt index: Int, of buffer: UnsafeRawBufferPointer) -> Bool {
        Qcow2.isAllZero(UnsafeRawBufferPointer(rebasing: buffer[(index * sector)..<((index + 1) * sector)]))
    }
}

/// Whether every byte is zero: the first bytes are zero and every byte equals
/// the one 16 bytes later (memcmp of the buffer against itself, shifted).
func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return true }
    let head = min(bytes.count, 16)
    for i in 0..<head where bytes[i] != 0 { return false }
    return bytes.count <= head || memcmp(base, base + head, bytes.count - head) == 0
}
