// What the write path offers on top of reads, in the terms of QEMU's block
// layer (bdrv_pwrite, bdrv_pwrite_zeroes, bdrv_pdiscard, bdrv_flush).
//
// Concurrency: like reads, writes may come from several threads at once;
// implementations serialise metadata updates, not data I/O.
// Durability: a write is durable once a later `flush()` has returned.

/// A `BlockImage` opened for writing: writes, zero writes, discards,
/// compressed writes and flushes, each throwing `Qcow2Error`.
public protocol WritableBlockImage: BlockImage {
    /// Whether the image was opened for writing (writes throw `readOnly` otherwise).
    var isWritable: Bool { get }

    /// Writes `buffer` at `offset` (any alignment); the range must lie within `size`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws

    /// Makes the range read as zeroes (qemu-io `write -z`). With `mayUnmap`
    /// the space may be released (qemu-io `write -z -u`).
    func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws

    /// Drops the range's data: afterwards it reads as zeroes or from the
    /// backing file, as the format defines (qemu-io `discard`).
    func discard(at offset: UInt64, length: UInt64) throws

    /// Writes whole clusters compressed (qemu-io `write -c`): `offset` must be
    /// cluster aligned and the length a whole cluster, or the tail of the image.
    func writeCompressed(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws

    /// Writes back cached metadata and makes everything written durable.
    func flush() throws
}
