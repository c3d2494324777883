// Refusing writes over metadata, and what happens when metadata is found
// broken: QEMU's qcow2_pre_write_overlap_check and qcow2_signal_corruption.
//
// Rule: before any metadata cluster is written (cache write-back, L1 entries,
// new L1 tables) and before guest data goes to a host cluster (new or not),
// the range is checked against every kind of metadata except the one being
// written. An overlap means the metadata is inconsistent: the image is
// marked corrupt (the header's corrupt bit, so that it can only be opened
// read-only until repaired) and every later write is refused.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// Throws (and marks the image corrupt) if writing `length` bytes at
    /// `offset` would overwrite metadata other than the kinds ignored.
    func checkOverlap(offset: UInt64, length: UInt64, ignoring: Set<MetadataOverlap.Kind> = []) throws {
        guard let kind = overlap.overlap(offset: offset, size: length, ignoring: ignoring) else { return }
        throw signalCorruption("Preventing invalid write on metadata (overlaps with \(kind.name))")
    }

    /// Marks the image corrupt and returns the error to throw (QEMU's
    /// qcow2_signal_corruption for a fatal event on a writable image).
    func signalCorruption(_ message: String) -> Error {
        let full = "qcow2: Marking image as corrupt: \(message); further corruption events will be suppressed"
        if corruption == nil {
            corruption = message
            header.incompatibleFeatures.insert(.corrupt)
            // Version 2 headers have no feature bits; QEMU writes them anyway,
            // and goes on if that fails (the write is refused regardless).
            try? writeHeaderCluster()
        }
        return Qcow2Error.writeFailed(errno: EIO, reason: full)
    }

    /// Throws when the image may not be changed any more.
    func checkUsable() throws {
        if let corruption {
            throw Qcow2Error.writeFailed(
                errno: ENOMEDIUM, reason: "Image is corrupt (\(corruption)); no further writes are accepted")
        }
        if isClosed { throw Qcow2Error.writeFailed(errno: EBADF, reason: "Image is closed") }
    }

    /// Runs a metadata operation; broken metadata found on the way marks
    /// the image corrupt, as QEMU does.
    func guarded<T>(_ body: () throws -> T) throws -> T {
        try checkUsable()
        do {
            return try body()
        } catch let Qcow2Error.corruptMetadata(message) {
            throw signalCorruption(message)
        } catch is FileTooLarge {
            throw Qcow2Error.writeFailed(errno: EFBIG, reason: "File too large")
        }
    }
}
