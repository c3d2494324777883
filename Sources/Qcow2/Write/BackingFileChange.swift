// Pointing an image at another backing file (QEMU's qcow2_change_backing_file):
// the name and the backing format extension change in memory, then the whole
// header cluster is rewritten as qcow2_update_header writes it. How a commit
// job relinks the overlays of the images it drops.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Image {
    /// Rewrites the header to name `name` (nil: no backing file) with the
    /// backing format `format` (nil: no backing format extension). The
    /// attached backing image is not changed. Needs the image open for writing.
    package func changeBackingFile(name: String?, format: String?) throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        // QEMU's limits: 1023 bytes of name, a 16-byte format buffer.
        if let name, name.utf8.count > Int(Qcow2Limits.maxBackingFileNameLength) {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: errnoDescription(EINVAL))
        }
        if let format, format.utf8.count > Int(Qcow2Limits.maxBackingFormatLength) {
            throw Qcow2Error.writeFailed(errno: EINVAL, reason: errnoDescription(EINVAL))
        }
        let newExtensions = try withWriter { (writer, _) -> [HeaderExtension] in
            let oldName = writer.backingFileName
            let oldExtensions = writer.extensions
            var records = oldExtensions.filter {
                if case .backingFormat = $0 { return false }
                return true
            }
            if let format { records.insert(.backingFormat(format), at: 0) }
            writer.backingFileName = name
            writer.extensions = records
            do {
                try writer.writeHeaderCluster()
            } catch {
                writer.backingFileName = oldName
                writer.extensions = oldExtensions
                throw error
            }
            return records
        }
        stored.withLock {
            $0.extensions = newExtensions
            $0.backingFileName = name
        }
    }
}
