// Writing to a qcow2 image: the WritableBlockImage operations, checked here
// and carried out by the write path (Sources/Qcow2/Write), which changes the
// image exactly as QEMU 7.2 does for the same requests.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image: WritableBlockImage {
    /// Writes `buffer` at `offset`, allocating clusters and copying on write as
    /// QEMU does. Throws `Qcow2Error` (`readOnly`, `requestOutOfRange`,
    /// `writeFailed` with QEMU's errno).
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkWritable()
        try checkRange(offset, buffer.count)
        guard !buffer.isEmpty else { return }
        defer { markBitmapsDirty(offset: offset, length: UInt64(buffer.count)) }
        try writeGuestData(buffer, at: offset)
    }

    /// `write` of data the image already reads there (a stream's
    /// copy-on-read): the guest sees no change, so no bitmap is marked
    /// (QEMU's BDRV_REQ_WRITE_UNCHANGED writes skip bdrv_set_dirty).
    package func writeUnchanged(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkWritable()
        try checkRange(offset, buffer.count)
        guard !buffer.isEmpty else { return }
        try writeGuestData(buffer, at: offset)
    }

    /// Makes the range read as zeroes (zero flags where the image has them;
    /// with `mayUnmap` clusters may be freed). Throws `Qcow2Error` as `write` does.
    public func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws {
        try checkWritable()
        try checkByteRange(offset, length)
        guard length > 0 else { return }
        defer { markBitmapsDirty(offset: offset, length: length) }
        try writeGuestZeroes(at: offset, length: length, mayUnmap: mayUnmap)
    }

    /// `writeZeroes` of a range that already reads as zeroes (a
    /// copy-on-read of zeroes): no bitmap is marked, as for `writeUnchanged`.
    package func writeZeroesUnchanged(at offset: UInt64, length: UInt64) throws {
        try checkWritable()
        try checkByteRange(offset, length)
        guard length > 0 else { return }
        try writeGuestZeroes(at: offset, length: length, mayUnmap: false)
    }

    /// Discards the range as QEMU's qcow2 driver does. Throws `Qcow2Error`
    /// as `write` does.
    public func discard(at offset: UInt64, length: UInt64) throws {
        try checkWritable()
        try checkByteRange(offset, length)
        guard length > 0 else { return }
        defer { markBitmapsDirty(offset: offset, length: length) }
        try discardGuestData(at: offset, length: length)
    }

    /// Writes one cluster compressed with the image's compression type.
    /// Throws `Qcow2Error` as `write` does (`invalidArgument` when unaligned).
    public func writeCompressed(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkWritable()
        try checkRange(offset, buffer.count)
        defer { markBitmapsDirty(offset: offset, length: UInt64(buffer.count)) }
        try writeGuestCompressed(buffer, at: offset)
    }

    /// Writes one cluster compressed ahead of time by `ClusterCompression`
    /// (on any thread): allocation and the L2 update happen here, so clusters
    /// written in guest order lie in the file as qemu-img lays them out,
    /// whichever thread compressed them. Throws `Qcow2Error` as
    /// `writeCompressed` does.
    package func writeCompressed(_ cluster: CompressedCluster, at offset: UInt64) throws {
        try checkWritable()
        try checkRange(offset, cluster.data.count)
        try checkCompressedRange(offset, cluster.data.count)
        defer { markBitmapsDirty(offset: offset, length: UInt64(cluster.data.count)) }
        try writeCompressedCluster(cluster, at: offset)
    }

    /// Writes back cached metadata in QEMU's order and syncs the file.
    /// Throws `Qcow2Error` as `write` does.
    public func flush() throws {
        guard isWritable else { return }
        try flushWriter()
    }

    /// Counts references and compares them with the refcounts, changing
    /// nothing (what `qemu-img check` reports about refcounts); for tests.
    func checkRefcounts() throws -> RefcountCheckOutcome {
        try checkWritable()
        return try withWriter { writer, _ in try writer.checkRefcounts() }
    }

    private func checkWritable() throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        // Copy-on-write and zero writes must see the backing file: writing
        // without it would copy zeroes where its data shows through.
        if let name = backingFileName, !name.isEmpty, backing == nil, !isBackingChosen {
            throw Qcow2Error.writeFailed(
                errno: EINVAL,
                reason: "The backing file '\(name)' is not open; open the image with its chain (ImageOpener) to write")
        }
    }

    private func checkByteRange(_ offset: UInt64, _ length: UInt64) throws {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= size else {
            throw Qcow2Error.requestOutOfRange(offset: offset, length: length, size: size)
        }
    }
}
