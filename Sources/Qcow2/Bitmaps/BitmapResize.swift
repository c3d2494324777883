// Resizing an image with bitmaps (QEMU 7.2's qcow2_truncate_bitmaps_check,
// then bdrv_dirty_bitmap_truncate once the size changed): every bitmap on
// disk must be in memory and consistent; they then cover the new size (new
// chunks clean, chunks past a smaller end dropped) and are stored so on close.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// Then, past QEMU's checks, the bitmaps at the new size must fit
    /// Qcow2Limits.maxBitmapMemory.
    func checkBitmapsResizable(newSize: UInt64) throws {
        if bitmapsExtension != nil {
            let entries: [BitmapDirectoryEntry]
            do {
                entries = try currentBitmapDirectory()
            } catch {
                throw Qcow2Error.writeFailed(errno: EINVAL, reason: Qcow2Error.reason(of: error))
            }
            for entry in entries {
                guard let bitmap = dirtyBitmaps.first(where: { $0.name == entry.name }) else {
                    throw Qcow2Error.writeFailed(
                        errno: ENOTSUP,
                        reason: "Cannot resize qcow2 with persistent bitmaps that were not loaded into memory")
                }
                do {
                    try Qcow2Image.checkUsable(bitmap)
                } catch let error as BitmapError {
                    throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: error.message)
                }
            }
        }
        // Saturating: thousands of fine bitmaps at a size near 2^63 add up
        // past UInt64 (8192 of granularity 512 make 2^64 bytes).
        let total = dirtyBitmaps.filter { !$0.isInconsistent }.reduce(UInt64(0)) { total, bitmap in
            let (sum, overflow) = total.addingReportingOverflow(
                BitmapConstraints.memory(granularity: bitmap.granularity, size: newSize))
            return overflow ? .max : sum
        }
        if let message = BitmapConstraints.memoryViolation(total: total) {
            throw Qcow2Error.writeFailed(errno: ENOMEM, reason: message)
        }
    }

    func resizeBitmaps(to newSize: UInt64) {
        for i in dirtyBitmaps.indices { dirtyBitmaps[i].truncate(to: newSize) }
    }
}
