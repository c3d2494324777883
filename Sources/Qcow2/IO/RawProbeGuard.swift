// The guard QEMU puts on sector 0 of a raw image whose format was probed:
// a guest must not be able to write another format's header there, or the
// next probing open would take guest data for image metadata (and follow,
// say, a backing file name the guest chose). Writes that would leave such a
// header are refused with EPERM.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum RawProbeGuard {
    /// QEMU probes formats on the first 512 bytes.
    static let sectorSize: UInt64 = 512

    /// Throws EPERM if sector 0, once `buffer` is written at `offset`
    /// (below `sectorSize`), would probe as a format other than raw.
    static func checkFirstSector(after buffer: UnsafeRawBufferPointer, at offset: UInt64, in file: BlockFile) throws {
        var sector = [UInt8](repeating: 0, count: Int(sectorSize))
        try sector.withUnsafeMutableBytes { _ = try file.read(into: $0, at: 0) }
        let start = Int(offset)
        let count = min(buffer.count, sector.count - start)
        for i in 0..<count { sector[start + i] = buffer[i] }
        if looksLikeImageHeader(sector) {
            throw Qcow2Error.io(step: "write to sector 0 of a probed raw image", errno: EPERM)
        }
    }

    /// Whether `sector` carries the signature of an image format QEMU
    /// would probe ahead of raw (the formats with a fixed binary magic).
    static func looksLikeImageHeader(_ sector: [UInt8]) -> Bool {
        func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
        func starts(with magic: [UInt8], at position: Int = 0) -> Bool {
            sector.count >= position + magic.count && Array(sector[position..<position + magic.count]) == magic
        }
        // qcow (version 1) and qcow2 (version >= 2): "QFI\xfb" and a version.
        if starts(with: [0x51, 0x46, 0x49, 0xfb]) && sector.be(UInt32.self, at: 4) >= 1 { return true }
        if starts(with: [0x51, 0x45, 0x44, 0x00]) { return true }                  // QED
        if starts(with: bytes("KDMV")) || starts(with: bytes("COWD")) { return true } // VMDK
        if starts(with: [0x7f, 0x10, 0xda, 0xbe], at: 64) { return true }          // VDI
        if starts(with: bytes("conectix")) { return true }                           // VPC
        if starts(with: bytes("vhdxfile")) { return true }                           // VHDX
        if starts(with: [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]) { return true }     // LUKS
        if starts(with: bytes("WithoutFreeSpace")) || starts(with: bytes("WithouFreSpacExt")) { return true } // Parallels
        if starts(with: bytes("Bochs Virtual HD Image")) { return true }
        return false
    }
}
